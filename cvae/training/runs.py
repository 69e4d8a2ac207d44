"""The run directory of `cvae train`: the one owner of its layout.

  model.keras        the best model so far (by val_loss, or loss without validation)
  model.best.json    which epoch that is and its value
  run.json           the configuration and options of the run
  history.csv        per-epoch metrics (Keras' CSVLogger); loss_curves.png plots them
  images/            per-epoch reconstructions and samples
  logs/              TensorBoard
  backup/            the resume point while training is unfinished
  final/             a finished run's last state, from which more epochs train on
                     (both hold the trainer's EpochBackup files: STATE_WEIGHTS_FILE
                     and STATE_EPOCHS_FILE)
  epochs/            with the adversarial term or a weight average, each epoch's
                     state as epoch_NNN.keras (no optimizer), for
                     `cvae export --checkpoint N`
"""

import dataclasses
import json
from pathlib import Path

from cvae.atomic import write_text
from cvae.errors import CvaeError
from cvae.figures import pyplot, save_figure
from cvae.model.config import DEFAULT_PRESET
from cvae.model.saving import load_model, rebuilt, save_model

MODEL_FILE = "model.keras"
BEST_RECORD_FILE = "model.best.json"
RUN_RECORD_FILE = "run.json"
HISTORY_FILE = "history.csv"
CURVES_FILE = "loss_curves.png"
IMAGES_DIR = "images"
LOGS_DIR = "logs"
BACKUP_DIR = "backup"
FINAL_DIR = "final"
EPOCHS_DIR = "epochs"
# A backup's weights (model and optimizers) and its count of epochs done
# (the trainer's EpochBackup; Keras' BackupAndRestore's names).
STATE_WEIGHTS_FILE = "latest.weights.h5"
STATE_EPOCHS_FILE = "training_metadata.json"
CHECKPOINTS = ("best", "last")
# Everything a run directory holds (besides temporary files): --overwrite removes these.
RUN_FILES = (MODEL_FILE, BEST_RECORD_FILE, RUN_RECORD_FILE, HISTORY_FILE, CURVES_FILE,
             IMAGES_DIR, LOGS_DIR, BACKUP_DIR, FINAL_DIR, EPOCHS_DIR)


@dataclasses.dataclass
class TrainOptions:
    # A folder or array file, or a list of them trained on together.
    data: object
    # The run directory; None: runs/PRESET (see run_directory).
    out: str = None
    preset: str = DEFAULT_PRESET
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 1e-3
    # "cosine" decays the rate to zero over all epochs; "constant" keeps it.
    learning_rate_schedule: str = "constant"
    # Keep an exponential moving average of the VAE's weights with this
    # momentum (None: none). The saved models (model.keras, epochs/) hold the
    # average; the resume point holds the raw weights, the average inside the
    # optimizer's state.
    # Raise the learning rate linearly from zero over this many steps first:
    # a fresh Adam otherwise takes full-size steps at once, which blew up
    # some seeds' training from scratch (cvae.training.schedules.learning_rate_schedule).
    warmup_steps: int = 500
    # Stop (cleanly, after validating and saving) once training has run this
    # many minutes, counted across resumes.
    time_limit_minutes: float = None
    precision: str = "auto"
    # XLA: "auto" lets Keras enable it on GPUs (it stays off on CPU-only machines).
    jit_compile: object = "auto"
    validation_data: object = None
    validation_fraction: float = 0.05
    crop_box: tuple = None
    # "off" (training sets are usually framed already), "auto" or "on": see cvae.data.image_files.Framing.
    align: str = "off"
    face_index: int = 0
    flip: bool = True
    seed: int = None
    tensorboard: bool = True
    verbose: object = "auto"
    # Overrides of the preset's VAEConfig fields (image_size, latent_dim, beta, ...).
    config_overrides: dict = dataclasses.field(default_factory=dict)
    # "none" or "mirrored" (all local GPUs).
    # batch_size is the global batch, split across replicas.
    distribute: str = "none"
    # Fine-tune: start from this saved model's weights and configuration
    # (the preset and overrides then do not apply) with a fresh optimizer.
    initial_model: str = None
    # With initial_model: train the encoder alone. The decoder and its scale
    # keep the initial model's weights, so what the model draws is unchanged
    # while its codes move closer to the ones the decoder reconstructs best.
    # Start again in a run directory that holds a finished run (its files are
    # deleted first); without it such a run is never replaced.
    overwrite: bool = False


def run_directory(options):
    """Where a run goes: --out, or runs/PRESET by default."""
    return Path(options.out) if options.out else Path("runs") / options.preset


def is_unfinished(run_dir):
    """Whether a run directory holds a run that stopped before its end."""
    return (Path(run_dir) / BACKUP_DIR).exists()


def read_history(path):
    """The rows of a run's history.csv (Keras' CSVLogger) as dicts of floats.

    Cells of a metric missing from an epoch are left out of its row: empty,
    or "NA", which CSVLogger writes in every val_ column of a run without
    validation data.
    """
    import csv

    with open(path, newline="", encoding="utf-8") as handle:
        return [{key: float(value) for key, value in row.items() if value and value != "NA"}
                for row in csv.DictReader(handle)]


def export_model(run_dir, path, checkpoint="best"):
    """Publish a run's model: weights without optimizer state (a third of
    the size), plus `<path stem>.json` recording how it was trained (with,
    under "initial", the record of the model a fine-tuning run started from).

    checkpoint: "best" (model.keras, the best by the monitored loss), "last"
    (the state the run last reached, see `load_last_state`) or an epoch
    number N (its state after epoch N, kept in epochs/ by runs with the
    adversarial term).
    """
    run_dir = Path(run_dir)
    if checkpoint not in CHECKPOINTS and not isinstance(checkpoint, int):
        raise ValueError(f"checkpoint must be one of {CHECKPOINTS} or an epoch number, "
                         f"got {checkpoint!r}")
    if isinstance(checkpoint, int):
        state = epoch_state_path(run_dir, checkpoint)
        if not state.is_file():
            raise CvaeError(f"{run_dir} has no state of epoch {checkpoint} ({state}; runs with "
                            f"the adversarial term keep each epoch's in {EPOCHS_DIR}/)")
        model = load_model(state)
    elif checkpoint == "best":
        model = load_model(run_dir / MODEL_FILE)
    else:
        model = load_last_state(run_dir)
    # Read before the write below, which may replace a fine-tuned run's very
    # starting model.
    record = training_record(run_dir)
    if checkpoint == "last":
        record["exported"] = {"checkpoint": checkpoint, "epoch": len(record.get("history", []))}
    elif isinstance(checkpoint, int):
        record["history"] = record.get("history", [])[:checkpoint]
        record["epochs_run"] = checkpoint
        record["exported"] = {"checkpoint": "epoch", "epoch": checkpoint}
    # Keras' .keras format always stores a compiled model's optimizer; an
    # uncompiled copy has none.
    save_model(rebuilt(model, model.dtype_policy.name), path)
    write_text(Path(path).with_suffix(".json"), json.dumps(record, indent=2) + "\n")
    return Path(path)


def epoch_state_path(run_dir, epoch):
    """Where a run with the adversarial term keeps its state after `epoch`
    (counted from 1)."""
    return Path(run_dir) / EPOCHS_DIR / f"epoch_{epoch:03d}.keras"


def last_state_dir(run_dir):
    """Where a run's last state lies: its resume point while unfinished, else
    its final state; None if it has neither (a run from before final/ existed)."""
    for name in (BACKUP_DIR, FINAL_DIR):
        if (Path(run_dir) / name / STATE_WEIGHTS_FILE).is_file():
            return Path(run_dir) / name
    return None


def load_last_state(run_dir):
    """The model as its run last left it, at the end of its last finished epoch.

    model.keras is the best epoch by the monitored loss, which is the right
    choice for the likelihood alone; with the adversarial term that loss
    rises while the images sharpen, so the last state is the one to publish.
    """
    from cvae.model.vae import VAE

    run_dir = Path(run_dir)
    state = last_state_dir(run_dir)
    record = read_run_record(run_dir)
    if state is None or record is None:
        raise CvaeError(f"{run_dir} has no last state to export ({BACKUP_DIR}/ or "
                        f"{FINAL_DIR}/ with {STATE_WEIGHTS_FILE}, and {RUN_RECORD_FILE})")
    model = VAE(record["config"], dtype=record["precision"])
    # Uncompiled, so the optimizers' state in the file is not read.
    model.load_weights(state / STATE_WEIGHTS_FILE)
    return model


def read_run_record(run_dir):
    """The run's run.json (configuration and options), or None before it is written."""
    path = Path(run_dir) / RUN_RECORD_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def training_record(run_dir):
    """How a run's model was trained: its run.json, best epoch and history,
    and under "initial" the same for the model it was fine-tuned from (an
    exported model's .json, or the record of the run directory it lies in)."""
    run_dir = Path(run_dir)
    record = read_run_record(run_dir) or {}
    initial = record.get("options", {}).get("initial_model")
    if initial:
        initial = Path(initial)
        if initial.with_suffix(".json").is_file():
            record["initial"] = json.loads(initial.with_suffix(".json").read_text(
                encoding="utf-8"))
        elif initial.name == MODEL_FILE and (initial.parent / RUN_RECORD_FILE).is_file():
            record["initial"] = training_record(initial.parent)
    if (run_dir / BEST_RECORD_FILE).is_file():
        record["best"] = json.loads((run_dir / BEST_RECORD_FILE).read_text(encoding="utf-8"))
    if (run_dir / HISTORY_FILE).is_file():
        record["history"] = read_history(run_dir / HISTORY_FILE)
        record["epochs_run"] = len(record["history"])
    return record


def plot_history(csv_path, png_path):
    """Loss curves (train and validation) from a Keras CSVLogger file."""
    plt = pyplot()
    # A resumed run may log an epoch twice; the later line wins.
    rows = {int(row["epoch"]): row for row in read_history(csv_path)}
    if not rows:
        return
    epochs = sorted(rows)
    figure, axes = plt.subplots(1, 3, figsize=(12, 3.5))
    for axis, name in zip(axes, ("loss", "reconstruction_loss", "kl_loss")):
        for prefix, style in (("", "-"), ("val_", "--")):
            key = prefix + name
            if key in rows[epochs[0]]:
                # Markers: a single epoch is a point, which a bare line would not show.
                axis.plot([e + 1 for e in epochs], [rows[e][key] for e in epochs],
                          style, marker="o", markersize=3, label=key)
        axis.set_title(name)
        axis.set_xlabel("epoch")
        axis.legend()
    save_figure(figure, png_path)
