"""The exception every user-facing failure is turned into, and how a command
reports it: one line on stderr and a non-zero exit code, never a traceback."""

import errno
import os
import sys
import warnings

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


class CvaeError(Exception):
    """A problem with the user's input; the CLI prints it as one line."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with what the user can do about it (e.g. how to resume)."""


# What the system's errors mean for a path the user gave, in place of Python's
# "[Errno 17] File exists: 'x'".
_OS_ERRORS = {
    errno.EEXIST: "a file is in the way: a folder is needed there",
    errno.ENOTDIR: "a file is in the way: part of the path is a file, not a folder",
    errno.EISDIR: "it is a folder, not a file",
    errno.ENOENT: "no such file or directory",
    errno.EACCES: "permission denied",
    errno.ENOSPC: "no space left on the device",
    errno.EROFS: "the file system is read-only",
}


def first_line(error):
    """The first line of an exception's message (its type name if it has none);
    an OSError about a path as "PATH: what is wrong"."""
    if isinstance(error, OSError) and error.filename is not None:
        reason = _OS_ERRORS.get(error.errno, (error.strerror or "").lower())
        return f"{error.filename}: {reason}"
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def run_command(program, run):
    """Call `run()` and return its exit code (0 for None), turning whatever it
    raises into one line on stderr prefixed with `program`: how `cvae` and the
    scripts in scripts/ and benchmarks/ end. Warnings are one line too, with
    the same prefix, instead of Python's file, line number and source line."""
    warnings.showwarning = lambda message, *_, **__: print(f"{program}: warning: {message}",
                                                           file=sys.stderr)
    try:
        return run() or 0
    except (CvaeError, ValueError, OSError) as error:
        print(f"{program}: error: {first_line(error)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt as interrupt:
        advice = f"; {interrupt}" if isinstance(interrupt, Interrupted) else ""
        print(f"{program}: interrupted{advice}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:  # A bug, not bad input: still one line unless asked.
        if os.environ.get("CVAE_DEBUG"):
            raise
        print(f"{program}: internal error: {type(error).__name__}: {first_line(error)} "
              f"(set CVAE_DEBUG=1 for the traceback)", file=sys.stderr)
        return EXIT_ERROR


def run_script(main):
    """`sys.exit(run_script(main))` at the bottom of a script in scripts/ or benchmarks/."""
    return run_command(os.path.basename(sys.argv[0]), main)
