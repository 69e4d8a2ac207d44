"""Atomic writes: every file the project writes appears whole or not at all
(written to a temporary file beside it, then renamed)."""

import contextlib
import os
from pathlib import Path

# Temporary files start with this; a rerun of training deletes those a killed
# process left behind (cvae.training.remove_stale_temporaries).
TEMPORARY_PREFIX = ".tmp-"


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


def write_text(path, text):
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
