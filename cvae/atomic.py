"""Atomic writes: every file the project writes appears whole or not at all
(written to a temporary file beside it, then renamed)."""

import contextlib
import os
from pathlib import Path

# Temporary files start with this; a rerun of training deletes those a killed
# process left behind (cvae.training.trainer.remove_stale_temporaries).
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


def refuse_to_replace(path, force, cost="", alternative=""):
    """CvaeError if something is at `path` and `force` is not set: nothing
    replaces a user's file without --force. `cost`: what replacing it would
    break; `alternative`: another way out than --force."""
    from cvae.errors import CvaeError

    if not force and Path(path).exists():
        raise CvaeError(f"{path} exists{cost} (use --force to overwrite{alternative})")


def refuse_inside_installed_package(path):
    """CvaeError if `path` lies among the installed packages (site-packages):
    the shipped model and its files are read-only there, and a write would
    be lost on the next install or break every file made with them. A
    checkout installed in editable mode is the developer's own tree, and may
    be written."""
    import sysconfig

    from cvae.errors import CvaeError

    resolved = Path(path).resolve()
    for key in ("purelib", "platlib"):
        installed = Path(sysconfig.get_paths()[key]).resolve()
        if resolved.is_relative_to(installed):
            raise CvaeError(f"{path} is inside the installed packages ({installed}); "
                            f"copy the model somewhere of your own and use that")
