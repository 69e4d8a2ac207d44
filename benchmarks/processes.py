"""Timing a whole command as a user runs it: a fresh process, start-up included."""

import subprocess
import time

from cvae.errors import CvaeError


def timed_run(command, cwd=None):
    """Run `command` to its end -> its wall time in seconds; a CvaeError with
    the end of its stderr if it fails."""
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=cwd)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise CvaeError(f"{' '.join(map(str, command))} failed: {done.stderr.strip()[-300:]}")
    return elapsed
