"""Working through many images or codes a batch at a time, so that tens of
thousands never sit in memory as float32 at once: one helper, one default."""

# Images or codes a network sees at once at inference: 256 128x128 RGB
# images are 50 MB as float32.
INFERENCE_BATCH = 256


def batches(array, size=INFERENCE_BATCH):
    """Consecutive slices of `array` along its first axis, each of at most `size`."""
    for start in range(0, len(array), size):
        yield array[start:start + size]
