"""Saving and loading models; every write is atomic (temporary file, then rename)."""

import contextlib
import os
from pathlib import Path

from cvae.errors import CvaeError, first_line

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL_NAME = "cvae-faces.keras"


def _installed_models():
    """The folder of the models installed with the package (saved_models/ in
    the repository, mapped to cvae.saved_models by pyproject.toml)."""
    import importlib.resources

    try:
        return Path(str(importlib.resources.files("cvae.saved_models")))
    except ModuleNotFoundError:  # Running from a checkout that was never installed.
        return REPOSITORY_ROOT / "saved_models"


DEFAULT_MODEL_PATH = _installed_models() / DEFAULT_MODEL_NAME
# The public-domain face the README's figures show (dataset faces may not be
# published), and the box around the face in it.
SHOWCASE_IMAGE = REPOSITORY_ROOT / "data" / "astronaut.png"
SHOWCASE_CROP_BOX = (150, 30, 140, 140)
TEMPORARY_PREFIX = ".tmp-"
# What a training run directory holds (cvae/training.py writes it).
MODEL_FILE = "model.keras"
RUN_RECORD_FILE = "run.json"


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; rename it onto `path` on success.

    The temporary name keeps the final suffix (Keras checks `.keras`,
    `.weights.h5`), and a crash never leaves `path` half-written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{TEMPORARY_PREFIX}{os.getpid()}-{path.name}")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def save_model(model, path):
    with atomic_path(path) as temporary:
        model.save(temporary)


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


def export_model(run_dir, path):
    """Publish a run's best model: weights without optimizer state (a third of
    the size), plus `<path stem>.json` recording how it was trained (with,
    under "initial", the record of the model a fine-tuning run started from)."""
    import json

    run_dir = Path(run_dir)
    model = load_model(run_dir / MODEL_FILE)
    record = {}
    if (run_dir / RUN_RECORD_FILE).is_file():
        record.update(json.loads((run_dir / RUN_RECORD_FILE).read_text(encoding="utf-8")))
    # A fine-tuned model's record includes how its starting model was trained
    # (read before the write below, which may replace that very model).
    initial = record.get("options", {}).get("initial_model")
    if initial and Path(initial).with_suffix(".json").is_file():
        record["initial"] = json.loads(Path(initial).with_suffix(".json").read_text(
            encoding="utf-8"))
    # Keras' .keras format always stores a compiled model's optimizer; an
    # uncompiled copy has none.
    save_model(rebuilt(model, model.dtype_policy.name), path)
    if (run_dir / "model.best.json").is_file():
        record["best"] = json.loads((run_dir / "model.best.json").read_text(encoding="utf-8"))
    if (run_dir / "history.csv").is_file():
        record["history"] = read_history(run_dir / "history.csv")
        record["epochs_run"] = len(record["history"])
    write_text(Path(path).with_suffix(".json"), json.dumps(record, indent=2) + "\n")
    return Path(path)


def write_text(path, text):
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")


def replace_between_markers(path, name, text):
    """Replace what lies between `<!-- name:begin -->` and `<!-- name:end -->` in a
    document (how the scripts keep the README's measured numbers current)."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    document = Path(path).read_text(encoding="utf-8")
    if begin not in document or end not in document:
        raise CvaeError(f"{path} has no {begin} ... {end} section")
    head, rest = document.split(begin, 1)
    _, tail = rest.split(end, 1)
    write_text(path, f"{head}{begin}\n{text}\n{end}{tail}")


def default_model_path():
    """The model used without --model: $CVAE_MODEL, else the installed default."""
    return Path(os.environ.get("CVAE_MODEL", DEFAULT_MODEL_PATH))


def load_model(path=None, precision=None):
    """Load a VAE saved as `.keras`, in Keras safe mode (no arbitrary code).

    path None loads the default model (saved_models/, or $CVAE_MODEL).
    precision rebuilds the model in another dtype policy, e.g. "float32" for
    inference on a CPU without bfloat16; the optimizer state is then dropped.
    """
    import keras

    from cvae.model import VAE

    path = Path(path) if path is not None else default_model_path()
    if not path.is_file():
        hint = " (no default model has been trained yet; pass --model)" if path == DEFAULT_MODEL_PATH else ""
        raise CvaeError(f"no such model file: {path}{hint}")
    import zipfile

    if path.suffix != ".keras" or not zipfile.is_zipfile(path):
        # Keras' own message for these is a paragraph about other formats.
        raise CvaeError(f"cannot load model {path}: not a .keras model file")
    try:
        model = keras.saving.load_model(path, safe_mode=True)
    except Exception as error:  # Keras raises many types for a bad file; all mean "unloadable".
        raise CvaeError(f"cannot load model {path}: {first_line(error)}") from None
    if not isinstance(model, VAE):
        raise CvaeError(f"{path} holds a {type(model).__name__}, not a cvae VAE")
    if precision is not None and precision != model.dtype_policy.name:
        model = rebuilt(model, precision)
    return model


def rebuilt(model, precision):
    """An uncompiled copy of a VAE with the same weights, in `precision`."""
    from cvae.model import VAE

    copy = VAE(model.config, seed=model.seed, dtype=precision, name=model.name)
    copy.set_weights(model.get_weights())
    return copy
