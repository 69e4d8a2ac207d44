"""Choosing the compute precision: mixed_float16 on GPUs, bfloat16 on CPUs that have it."""

PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")


def resolve_precision(name="auto"):
    if name not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {name!r}")
    if name != "auto":
        return name
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        return "mixed_float16"
    return "mixed_bfloat16" if cpu_has_bfloat16() else "float32"


def cpu_has_bfloat16():
    """True on CPUs with native bfloat16 arithmetic (AVX-512 BF16 or AMX)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            flags = next((line.split(":", 1)[1].split() for line in cpuinfo
                          if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags
