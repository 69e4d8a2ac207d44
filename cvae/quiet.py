"""Silencing native libraries' start-up chatter.

TensorFlow and LiteRT write informational lines (oneDNN, CUDA probing, the
CPU delegate) from C++ straight to file descriptor 2, before any Python log
level applies. These helpers mute that descriptor around the calls that
print them; Python errors are unaffected, since they are raised. Set
CVAE_DEBUG=1 to see everything.
"""

import contextlib
import os
import sys


@contextlib.contextmanager
def stderr_muted():
    """Silence file descriptor 2 for the duration (unless $CVAE_DEBUG is set)."""
    if os.environ.get("CVAE_DEBUG"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def load_backend_quietly():
    """Import Keras and its backend (TensorFlow unless $KERAS_BACKEND says
    otherwise), and let TensorFlow look for GPUs, with their chatter muted.
    Commands that may not need a backend (compress and decompress on the
    LiteRT runtime) call this only when they do."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with stderr_muted():
        import keras

        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            tf.config.list_physical_devices("GPU")
