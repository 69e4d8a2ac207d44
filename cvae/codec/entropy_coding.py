"""Entropy coding of quantized latent codes, by constriction's range coder.

Each symbol is an integer in [-bound, bound] coded under a quantized
Gaussian of mean 0 and its own standard deviation (in symbol units):
`constriction.stream.model.QuantizedGaussian`, which gives every symbol in
the range a nonzero probability, so any code can be written. constriction
(Rust, with Python bindings) is a library made for exactly this job; it
replaced a hand-written arithmetic coder here (benchmarks/entropy_coders.py
measures the two on the same codes).

The range coder emits 32-bit words. They are stored big-endian with trailing
zero bytes dropped, after the output is moved, where the coder's final
interval allows, to the nearby number with the most trailing zero bytes;
every payload is checked by decoding it the way a reader will. A reader pads
the payload back to whole words with zeros.
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
    best = _to_bytes(encoder.get_compressed())
    # Any number inside the coder's final interval decodes the same, and the
    # reader pads with zeros: try the numbers just below and above the
    # output with the most trailing zero bytes, and keep the shortest that
    # decodes exactly.
    length = len(best)
    value = int.from_bytes(best, "big")
    for zero_bytes in range(min(length, 2 * _WORD), 0, -1):
        unit = 1 << (8 * zero_bytes)
        for candidate in (value // unit * unit, (value // unit + 1) * unit):
            if candidate >= 1 << (8 * length):
                continue
            payload = candidate.to_bytes(length, "big").rstrip(b"\0")
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
