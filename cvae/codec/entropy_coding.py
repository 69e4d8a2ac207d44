"""Entropy coding of quantized latent codes, by constriction's range coder.

Each symbol is an integer in [-bound, bound] coded under a quantized
Gaussian of mean 0 and its own standard deviation (in symbol units):
`constriction.stream.model.QuantizedGaussian`, which gives every symbol in
the range a nonzero probability, so any code can be written. constriction
(Rust, with Python bindings) is a library made for exactly this job; it
replaced a hand-written arithmetic coder here (benchmarks/entropy_coders.py
measures the two on the same codes).

The range coder emits 32-bit words. They are stored big-endian with trailing
zero bytes dropped; the last word is first moved, where the coder's final
interval allows, to the value with the most trailing zero bytes, and every
payload is checked by decoding it the way a reader will. A reader pads the
payload back to whole words with zeros.
"""

import numpy as np

_WORD = 4


def encode(symbols, stds, bound):
    """Integers `symbols` in [-bound, bound], each under N(0, stds[i]^2)
    quantized to integers -> bytes."""
    import constriction

    symbols = np.asarray(symbols, np.int32)
    stds = np.asarray(stds, np.float64)
    if symbols.shape != stds.shape:
        raise ValueError("one standard deviation per symbol is needed")
    if len(symbols) and (symbols.min() < -bound or symbols.max() > bound):
        raise ValueError(f"symbols must lie in [-{bound}, {bound}]")
    model = constriction.stream.model.QuantizedGaussian(-bound, bound)
    encoder = constriction.stream.queue.RangeEncoder()
    encoder.encode(symbols, model, np.zeros_like(stds), stds)
    words = encoder.get_compressed()
    best = _to_bytes(words)
    if len(words):
        # Any value in the final interval decodes the same; try the
        # neighbours of the last word with the most trailing zero bytes.
        last = int(words[-1])
        for zero_bytes in (3, 2, 1):
            mask = (1 << (8 * zero_bytes)) - 1
            for candidate in (last & ~mask, ((last | mask) + 1) & 0xFFFFFFFF):
                trial = words.copy()
                trial[-1] = candidate
                payload = _to_bytes(trial)
                if len(payload) < len(best) and _decodes_to(payload, symbols, stds, bound):
                    best = payload
    if not _decodes_to(best, symbols, stds, bound):  # Never expected; never write a bad file.
        raise RuntimeError("the range coder's output does not decode to its input")
    return best


def decode(payload, stds, bound):
    """Inverse of `encode`: bytes, the same stds and bound -> int array.
    Raises ValueError on a payload that is not a valid message."""
    import constriction

    stds = np.asarray(stds, np.float64)
    payload = bytes(payload) + b"\0" * (-len(payload) % _WORD)
    words = np.frombuffer(payload, ">u4").astype(np.uint32)
    model = constriction.stream.model.QuantizedGaussian(-bound, bound)
    try:
        decoder = constriction.stream.queue.RangeDecoder(words)
        return np.asarray(decoder.decode(model, np.zeros_like(stds), stds), np.int64)
    except (ValueError, RuntimeError, AssertionError) as error:
        raise ValueError(f"the entropy-coded payload is invalid: {error}") from None


def _to_bytes(words):
    return np.asarray(words, ">u4").tobytes().rstrip(b"\0")


def _decodes_to(payload, symbols, stds, bound):
    try:
        return np.array_equal(decode(payload, stds, bound), symbols)
    except ValueError:
        return False
