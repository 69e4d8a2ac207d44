"""The training pipeline: data -> model -> `fit` with checkpoints, logs and
figures, into a run directory whose layout `cvae.training.runs` owns."""

import dataclasses
import json
import math
import shutil
import time
from pathlib import Path

import keras
import numpy as np

from cvae.atomic import TEMPORARY_PREFIX, atomic_path, write_text
from cvae.data import datasets, image_files
from cvae.errors import CvaeError
from cvae.figures import image_grid, save_image
from cvae.model.config import get_preset
from cvae.model.saving import load_model, rebuilt, save_model
from cvae.model.vae import ADVERSARIAL_BACKEND_ERROR, VAE
from cvae.precision import resolve_precision
from cvae.training.runs import (
    BACKUP_DIR,
    CURVES_FILE,
    FINAL_DIR,
    HISTORY_FILE,
    IMAGES_DIR,
    LOGS_DIR,
    MODEL_FILE,
    RUN_FILES,
    RUN_RECORD_FILE,
    STATE_EPOCHS_FILE,
    STATE_WEIGHTS_FILE,
    epoch_state_path,
    plot_history,
    read_history,
    read_run_record,
    run_directory,
)
from cvae.training.schedules import learning_rate_schedule
from cvae.training.strategies import distribution_strategy

GRID_IMAGES = 8
# What a fine-tuning run may change in its initial model's configuration: the
# objective (the adversarial term, which adds a discriminator but leaves the
# network that the starting weights belong to as it is, and the face's weight).
FINE_TUNING_OVERRIDES = {"adversarial_weight", "adversarial_start_step", "discriminator_scales",
                         "face_weight"}


def train(options):
    """Train a VAE as described by `options`; returns (model, keras History)."""
    out = run_directory(options)
    strategy = distribution_strategy(options.distribute)
    _check_processes(options, getattr(strategy, "process_count", 1))
    # A mistyped --data is the likelier mistake than a finished --out: say so first.
    for source in _sources(options.data) + _sources(options.validation_data or []):
        image_files.require_exists(source)
    initial = _load_initial_model(options)
    if initial is not None:
        # The KL warm-up counts optimizer steps; a fresh optimizer would
        # otherwise ramp beta up from zero again on a trained model.
        config = initial.config.replace(kl_warmup_steps=0, **options.config_overrides)
    else:
        config = get_preset(options.preset).replace(**options.config_overrides)
    if config.adversarial_weight > 0 and keras.backend.backend() != "tensorflow":
        raise CvaeError(ADVERSARIAL_BACKEND_ERROR)
    precision = resolve_precision(options.precision)
    if options.seed is not None:
        keras.utils.set_random_seed(options.seed)
    record = _run_record(options, config, precision)
    _prepare_run_directory(out, options)
    resuming = (out / BACKUP_DIR).exists()
    if resuming:
        _check_same_configuration(out, record)
    remove_stale_temporaries(out)

    train_images, validation_images = _read_data(options, config)
    batch_size, processes = options.batch_size, getattr(strategy, "process_count", 1)
    if processes > 1:
        # Several processes (keras.distribution): each feeds its share of
        # every global batch, from its share of the images.
        batch_size //= processes
        train_images, validation_images = (strategy.shard(train_images),
                                           strategy.shard(validation_images))
    # Written only once the data is known to be good: a typo in --data leaves no run behind.
    write_text(out / RUN_RECORD_FILE, json.dumps(record, indent=2) + "\n")
    print(f"training on {len(train_images)} images, validating on {len(validation_images)}; "
          f"precision {precision}; {strategy.num_replicas_in_sync} replica(s)"
          + (f", process {strategy.process_index + 1} of {processes}" if processes > 1 else ""),
          flush=True)
    train_set = datasets.make_dataset(train_images, batch_size, shuffle=True,
                                      flip=options.flip, seed=options.seed)
    validation_set = (datasets.make_dataset(validation_images, batch_size, shuffle=False)
                      if len(validation_images) else None)

    with strategy.scope():
        model = VAE(config, seed=options.seed, dtype=precision)
        if initial is not None:
            model.copy_weights_from(initial)
        learning_rate = _learning_rate(options, steps_per_epoch=len(train_set))
        model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                      jit_compile=options.jit_compile)
        # Built now over every trainable weight, before a backup is loaded:
        # built lazily, it would see only the weights it is given (not a
        # discriminator's, which has its own optimizer) and a resumed run
        # would not find its state in the backup.
        model.optimizer.build(model.trainable_variables)
        epochs_done = restore_backup(model, out / BACKUP_DIR) if resuming else 0
    if resuming:
        print(f"resuming the unfinished run in {out} after epoch {epochs_done}", flush=True)
    monitor = "val_loss" if validation_set is not None else "loss"
    preview = validation_images if len(validation_images) >= GRID_IMAGES else train_images
    callbacks = [
        keras.callbacks.TerminateOnNaN(),
        WallClock(out / HISTORY_FILE if resuming else None, options.time_limit_minutes),
        AtomicBestCheckpoint(out / MODEL_FILE, monitor, resume=resuming),
        keras.callbacks.CSVLogger(str(out / HISTORY_FILE), append=resuming),
        TrainingFigures(out, preview[:GRID_IMAGES], seed=0),
    ]
    if options.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(str(out / LOGS_DIR)))
    if config.adversarial_weight > 0:
        callbacks.append(EpochStates(out))
    # Last, so an epoch counts as done only after its checkpoint and logs are written.
    callbacks.append(EpochBackup(out / BACKUP_DIR))
    history = model.fit(train_set, validation_data=validation_set, epochs=options.epochs,
                        initial_epoch=epochs_done, callbacks=callbacks, verbose=options.verbose,
                        shuffle=False)
    if model.stop_training and _last_loss_is_nan(history):
        raise CvaeError(f"training stopped: the loss became NaN; the best model so far is "
                        f"{out / MODEL_FILE}, and rerunning resumes from the last good epoch "
                        f"(try a lower --learning-rate)")
    return model, history


def _check_processes(options, processes):
    if processes == 1:
        return
    if options.batch_size % processes:
        raise CvaeError(f"--batch-size {options.batch_size} does not split over {processes} "
                        f"processes; give a multiple of {processes}")
    if options.time_limit_minutes is not None:
        # Each process would stop on its own clock, and the others wait on it for ever.
        raise CvaeError("--time-limit cannot stop several processes together; give --epochs alone")


def _prepare_run_directory(out, options):
    """A finished run is never replaced silently: --overwrite starts again,
    more --epochs train on from its final state, anything else is refused."""
    if not out.is_dir() or (out / BACKUP_DIR).exists():
        return  # A new run, or an unfinished one to resume.
    finished = (out / FINAL_DIR / STATE_EPOCHS_FILE)
    if options.overwrite:
        for name in RUN_FILES:
            path = out / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
        return
    if not finished.is_file():
        if (out / MODEL_FILE).exists():
            raise CvaeError(f"{out} holds a finished run that cannot be trained on (it has no "
                            f"{FINAL_DIR}/ state); choose another --out, or --overwrite to "
                            f"start again")
        return
    done = json.loads(finished.read_text(encoding="utf-8"))["epoch"]
    schedules = {options.learning_rate_schedule,
                 (read_run_record(out) or {}).get("options", {}).get("learning_rate_schedule")}
    if "cosine" in schedules:
        # The optimizer's step count carries on, so a longer cosine would jump
        # from its end (a rate near zero) back to mid-curve: that step blows a
        # trained model up.
        raise CvaeError(f"{out} holds a finished run whose cosine learning rate has decayed "
                        f"to zero; fine-tune it instead: --initial-model {out / MODEL_FILE} "
                        f"--warmup-steps 500 --out ANOTHER_FOLDER")
    if options.epochs <= done:
        raise CvaeError(f"{out} holds a finished run of {done} epoch(s); rerun with --epochs "
                        f"above {done} to train on from it, or --overwrite to start again")
    spent = _last_wall_time(out / HISTORY_FILE)
    if options.time_limit_minutes is not None and spent >= 60 * options.time_limit_minutes:
        raise CvaeError(f"{out} stopped at its time limit after {spent / 60:.1f} minutes; rerun "
                        f"with a larger --time-limit to train on, or --overwrite to start again")
    # Train on: the final state becomes the resume point, as after an interruption.
    shutil.copytree(out / FINAL_DIR, out / BACKUP_DIR)
    print(f"training the finished run in {out} on from epoch {done} to {options.epochs}",
          flush=True)


def _load_initial_model(options):
    if options.initial_model is None:
        return None
    refused = set(options.config_overrides) - FINE_TUNING_OVERRIDES
    if refused:
        raise CvaeError("a fine-tuned model keeps its initial model's network; drop the "
                        f"overrides {sorted(refused)}")
    return load_model(options.initial_model)


def remove_stale_temporaries(out):
    """Temporary files a killed process left half-written (see files.atomic_path);
    they were never renamed into place, so nothing refers to them."""
    for folder in (out, out / BACKUP_DIR):
        if folder.is_dir():
            for path in folder.glob(f"{TEMPORARY_PREFIX}*"):
                path.unlink(missing_ok=True)


def _learning_rate(options, steps_per_epoch):
    schedule = options.learning_rate_schedule
    if schedule not in ("constant", "cosine"):
        raise CvaeError(f"unknown learning-rate schedule {schedule!r}")
    return learning_rate_schedule(options.learning_rate, options.warmup_steps,
                                  total_steps=options.epochs * steps_per_epoch,
                                  cosine=schedule == "cosine")


def _run_record(options, config, precision):
    return {"config": config.to_dict(), "precision": precision,
            "options": {k: v for k, v in dataclasses.asdict(options).items()
                        if k not in ("config_overrides", "verbose")}}


def _check_same_configuration(out, record):
    """Refuse to resume a backup made with another configuration."""
    previous = read_run_record(out)
    if previous is not None and previous.get("config") != json.loads(json.dumps(record["config"])):
        raise CvaeError(f"{out} holds an unfinished run with another configuration; "
                        f"resume it with the same options or choose another --out")


def _read_data(options, config):
    """(training images, validation images), each source read and split on its own."""
    size, channels = config.image_size, config.channels
    framing = image_files.Framing(options.crop_box, options.align, options.face_index)
    train_parts, validation_parts = [], []
    fraction = 0.0 if options.validation_data else options.validation_fraction
    for source in _sources(options.data):
        train, validation = datasets.read_dataset(source, size, channels, framing,
                                                  validation_fraction=fraction, progress=True)
        train_parts.append(train)
        validation_parts.append(validation)
    if options.validation_data:
        validation_parts = [datasets.read_dataset(source, size, channels, framing,
                                                  progress=True)[0]
                            for source in _sources(options.validation_data)]
    return np.concatenate(train_parts), np.concatenate(validation_parts)


def _sources(value):
    return [value] if isinstance(value, (str, Path)) else list(value)


def _last_loss_is_nan(history):
    losses = history.history.get("loss", [])
    return bool(losses) and not math.isfinite(losses[-1])


class WallClock(keras.callbacks.Callback):
    """Logs the training time so far as `wall_time_s` and enforces a time limit.

    The time carries over from the previous process's history when resuming,
    so a limit bounds the whole run, not each session of it. When the limit
    passes mid-epoch the epoch is cut short but still validated and saved.
    """

    def __init__(self, previous_history=None, limit_minutes=None):
        super().__init__()
        self.offset = _last_wall_time(previous_history)
        self.limit_s = None if limit_minutes is None else 60.0 * limit_minutes

    def on_train_begin(self, logs=None):
        self.start = time.monotonic() - self.offset
        self.limit_reached = False

    def on_train_batch_end(self, batch, logs=None):
        if self.limit_s is not None and time.monotonic() - self.start >= self.limit_s:
            self.limit_reached = True
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["wall_time_s"] = round(time.monotonic() - self.start, 1)
        if self.limit_reached:
            print(f"time limit of {self.limit_s / 60:g} minutes reached; stopping", flush=True)


def _last_wall_time(history_file):
    if history_file is None or not Path(history_file).exists():
        return 0.0
    rows = read_history(history_file)
    return rows[-1].get("wall_time_s", 0.0) if rows else 0.0


class EpochStates(keras.callbacks.Callback):
    """Keeps each epoch's state (weights, no optimizer) in the run's epochs/.

    With the adversarial term the decoder's texture moves from epoch to epoch,
    so neither the best state by val_loss nor the last is reliably the one to
    publish; `cvae export --checkpoint N` exports any of them. Each is saved
    atomically and uncompiled (no optimizer state, less than half the size),
    which ModelCheckpoint's in-place save of the compiled model would not do.
    """

    def __init__(self, run_dir):
        super().__init__()
        self.run_dir = Path(run_dir)

    def on_epoch_end(self, epoch, logs=None):
        path = epoch_state_path(self.run_dir, epoch + 1)
        path.parent.mkdir(exist_ok=True)
        save_model(rebuilt(self.model, self.model.dtype_policy.name), path)


class AtomicBestCheckpoint(keras.callbacks.Callback):
    """Keeps the best model by `monitor`, written atomically.

    The best value so far lives in a sidecar file, so a resumed run does not
    overwrite a good model with the first epoch after the restart. Not
    keras.callbacks.ModelCheckpoint: it saves in place, so a kill while it
    writes leaves a broken model, and its best value starts over on resume.
    """

    def __init__(self, path, monitor="val_loss", resume=False):
        super().__init__()
        self.path = Path(path)
        self.monitor = monitor
        self.resume = resume
        self.record = self.path.with_suffix(".best.json")

    def on_train_begin(self, logs=None):
        self.best = math.inf
        if self.resume and self.record.exists() and self.path.exists():
            self.best = json.loads(self.record.read_text(encoding="utf-8"))["value"]

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or not math.isfinite(value) or value >= self.best:
            return
        self.best = float(value)
        save_model(self.model, self.path)
        write_text(self.record, json.dumps({"monitor": self.monitor, "value": self.best,
                                            "epoch": epoch + 1}) + "\n")


class EpochBackup(keras.callbacks.Callback):
    """The resume point (`restore_backup`), after each epoch whose loss is
    finite: the model's and optimizers' weights and the count of epochs done,
    each replaced atomically in `backup_dir`, so a run killed at any moment
    resumes from its last good epoch. An epoch whose loss is not finite is not
    backed up, and the backup is kept when training ends that way, so a rerun
    resumes before it instead of from NaN weights or from scratch.

    Keras' BackupAndRestore writes the same two files (its names, so older
    runs resume), but in place, and restores through private model state;
    this uses public APIs only: `save_weights`, and `fit(initial_epoch=)`.
    """

    def __init__(self, backup_dir):
        super().__init__()
        self.backup_dir = Path(backup_dir)
        self.diverged = False

    def on_epoch_end(self, epoch, logs=None):
        if not math.isfinite((logs or {}).get("loss", 0.0)):
            self.diverged = True
            return
        self.backup_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.backup_dir / STATE_WEIGHTS_FILE) as temporary:
            self.model.save_weights(str(temporary), overwrite=True)
        # Written second: a kill between the two leaves the newer weights
        # with the older count, and the rerun repeats one epoch from them.
        write_text(self.backup_dir / STATE_EPOCHS_FILE, json.dumps({"epoch": epoch + 1}))

    def on_train_end(self, logs=None):
        # The last state moves to final/ (one rename, so a kill leaves either
        # the backup or the final state), from which more epochs can follow.
        if self.diverged or not self.backup_dir.is_dir():
            return
        final = self.backup_dir.parent / FINAL_DIR
        if final.exists():
            shutil.rmtree(final)
        self.backup_dir.rename(final)


def restore_backup(model, backup_dir):
    """Load an `EpochBackup` into `model`, whose optimizers are built -> the
    number of epochs it had done (0 with no backup)."""
    backup_dir = Path(backup_dir)
    if not (backup_dir / STATE_WEIGHTS_FILE).is_file():
        return 0
    model.load_weights(backup_dir / STATE_WEIGHTS_FILE)
    epochs = backup_dir / STATE_EPOCHS_FILE
    return json.loads(epochs.read_text())["epoch"] if epochs.is_file() else 0


class TrainingFigures(keras.callbacks.Callback):
    """Each epoch: originals | reconstructions, N(0, I) samples, and the loss curves."""

    def __init__(self, out, preview_images, seed=0):
        super().__init__()
        self.out = Path(out)
        self.preview_images = preview_images
        self.seed = seed

    def on_epoch_end(self, epoch, logs=None):
        images = self.out / IMAGES_DIR
        reconstructions = self.model.reconstruct(self.preview_images)
        samples = self.model.generate(2 * GRID_IMAGES, seed=self.seed)
        save_image(image_grid([self.preview_images, reconstructions]),
                   images / f"epoch_{epoch + 1:03d}_reconstructions.png")
        save_image(image_grid([samples[:GRID_IMAGES], samples[GRID_IMAGES:]]),
                   images / f"epoch_{epoch + 1:03d}_samples.png")
        history = self.out / HISTORY_FILE
        if history.exists():
            plot_history(history, self.out / CURVES_FILE)
