"""Arithmetic coding of integer symbols under given frequency tables.

A textbook binary arithmetic coder with 32-bit state (Witten, Neal & Cleary
1987, in the form of Nayuki's reference implementation): each symbol narrows
[low, high] in proportion to its frequency, and settled leading bits are
shifted out. It costs within a few bits of -log2 P(symbols) per message.

Each symbol may have its own table, given as cumulative frequencies
`cumulative` with cumulative[0] == 0 and symbol s spanning
[cumulative[s], cumulative[s + 1]). Every symbol that can occur needs a
frequency of at least 1.

The message ends with a 1 bit; trailing zero bytes are dropped, since the
decoder reads zeros past the end of its input.
"""

import bisect

_STATE_BITS = 32
_FULL = 1 << _STATE_BITS
_HALF = _FULL >> 1
_QUARTER = _HALF >> 1
_MASK = _FULL - 1
# The narrowest interval is a quarter of the state range; each symbol needs
# room for at least one step in it.
MAX_TOTAL = _QUARTER + 2


class _Interval:
    """The coder's interval [low, high]; shared by encoder and decoder."""

    def __init__(self):
        self.low, self.high = 0, _MASK

    def narrow(self, cumulative, symbol):
        total = cumulative[-1]
        if not 0 < total <= MAX_TOTAL:
            raise ValueError(f"frequency total must be in 1..{MAX_TOTAL}, got {total}")
        start, end = cumulative[symbol], cumulative[symbol + 1]
        if end <= start:
            raise ValueError(f"symbol {symbol} has zero frequency")
        width = self.high - self.low + 1
        self.high = self.low + width * end // total - 1
        self.low = self.low + width * start // total

    def renormalize(self, settled_bit, straddling):
        """Shift out settled bits and expand straddling intervals, calling back for each."""
        while ((self.low ^ self.high) & _HALF) == 0:
            settled_bit(self.low >> (_STATE_BITS - 1))
            self.low = (self.low << 1) & _MASK
            self.high = ((self.high << 1) & _MASK) | 1
        # low = 01..., high = 10...: the interval straddles the middle; the
        # next output bit is undecided, so zoom in on the middle half.
        while self.low & ~self.high & _QUARTER:
            straddling()
            self.low = (self.low << 1) ^ _HALF
            self.high = ((self.high ^ _HALF) << 1) | _HALF | 1


def encode(symbols, tables):
    """symbols[i] coded under tables[i] (cumulative frequencies) -> bytes."""
    if len(symbols) != len(tables):
        raise ValueError("one table per symbol is needed")
    bits = []
    pending = 0
    interval = _Interval()

    def settled_bit(bit):
        nonlocal pending
        bits.append(bit)
        bits.extend([bit ^ 1] * pending)
        pending = 0

    def straddling():
        nonlocal pending
        pending += 1

    for symbol, cumulative in zip(symbols, tables):
        if not 0 <= symbol < len(cumulative) - 1:
            raise ValueError(f"symbol {symbol} is outside its table of {len(cumulative) - 1}")
        interval.narrow(cumulative, symbol)
        interval.renormalize(settled_bit, straddling)
    settled_bit(1)  # Any value in [low, high] would do; 1 then zeros lies inside.
    return _pack_bits(bits).rstrip(b"\0")


def decode(data, tables):
    """Inverse of `encode`: bytes and the same tables -> list of symbols."""
    bits = _unpack_bits(data)
    position = 0

    def next_bit():
        nonlocal position
        bit = bits[position] if position < len(bits) else 0
        position += 1
        return bit

    code = 0
    for _ in range(_STATE_BITS):
        code = (code << 1) | next_bit()
    interval = _Interval()

    def settled_bit(_):
        nonlocal code
        code = ((code << 1) & _MASK) | next_bit()

    def straddling():
        nonlocal code
        code = (code & _HALF) | ((code << 1) & (_MASK >> 1)) | next_bit()

    symbols = []
    for cumulative in tables:
        total = cumulative[-1]
        width = interval.high - interval.low + 1
        value = ((code - interval.low + 1) * total - 1) // width
        symbol = bisect.bisect_right(cumulative, value) - 1
        # Corrupt input can point outside the table; clamp so decoding stays
        # total (the caller's checksum is what detects corruption).
        symbol = min(max(symbol, 0), len(cumulative) - 2)
        symbols.append(symbol)
        interval.narrow(cumulative, symbol)
        interval.renormalize(settled_bit, straddling)
    return symbols


def _pack_bits(bits):
    bits = bits + [0] * (-len(bits) % 8)
    return bytes(int("".join(map(str, bits[i:i + 8])), 2) for i in range(0, len(bits), 8))


def _unpack_bits(data):
    return [(byte >> (7 - i)) & 1 for byte in data for i in range(8)]
