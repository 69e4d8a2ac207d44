"""Choosing the compute precision: mixed_float16 on GPUs, bfloat16 on CPUs that have it.

`resolve_precision` picks one to train in; `native_precision` picks one to run
a trained model in.
"""

PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")


def resolve_precision(name="auto"):
    if name not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {name!r}")
    if name != "auto":
        return name
    if has_gpu():
        return "mixed_float16"
    return "mixed_bfloat16" if cpu_has_bfloat16() else "float32"


def native_precision(saved):
    """`saved`, or float32 where this machine would only emulate it.

    What `load_model(precision="auto")` runs a trained model in. A CPU without
    AVX-512 BF16 or AMX emulates bfloat16 (and every x86 CPU float16): the
    model then computes the same images, to within bfloat16's rounding, at
    about half of float32's speed.
    """
    if saved == "float32" or has_gpu():
        return saved
    return saved if saved == "mixed_bfloat16" and cpu_has_bfloat16() else "float32"


def has_gpu():
    """Whether the Keras backend computes on a GPU."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    if backend == "jax":
        import jax

        return jax.default_backend() == "gpu"
    if backend == "torch":
        import torch

        return torch.cuda.is_available()
    return False


def cpu_has_bfloat16():
    """True on CPUs with native bfloat16 arithmetic (AVX-512 BF16 or AMX)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            flags = next((line.split(":", 1)[1].split() for line in cpuinfo
                          if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags
