"""The `.cvae` file format, version 1: packing and strict parsing.

All integers are little-endian. Offsets in bytes:

    0   4  magic, b"CVAE"
    4   1  format version (1)
    5   1  quantization mode: 0 float16, 1 int8, 2 entropy
    6   4  model fingerprint: the first 4 bytes of the SHA-256 of the model's
           weights (and, for entropy, of its codec table)
    10  2  image side in pixels (uint16)
    12  1  channels (1 or 3)
    13  2  latent dimension (uint16)
    15  q  quantization parameters, by mode:
             float16  none (q = 0)
             int8     lowest and highest level, float16 each (q = 4)
             entropy  the step in posterior standard deviations, float16 (q = 2)
    15+q n payload (the rest, up to the checksum):
             float16  latent_dim float16 values
             int8     latent_dim uint8 levels
             entropy  arithmetic-coded symbols of the active dimensions
    end-4 4 CRC-32 of every byte before it
"""

import dataclasses
import struct
import zlib

from cvae.errors import CvaeError

MAGIC = b"CVAE"
VERSION = 1
MODES = ("float16", "int8", "entropy")
FINGERPRINT_BYTES = 4
_FIXED = struct.Struct("<4sBB4sHBH")
_CHECKSUM = struct.Struct("<I")
_PARAMETERS = {"float16": struct.Struct("<"), "int8": struct.Struct("<ee"),
               "entropy": struct.Struct("<e")}
HEADER_BYTES = {mode: _FIXED.size + _PARAMETERS[mode].size + _CHECKSUM.size for mode in MODES}


class FormatError(CvaeError):
    """The bytes are not a valid `.cvae` file."""


@dataclasses.dataclass(frozen=True)
class Header:
    mode: str
    fingerprint: bytes
    image_size: int
    channels: int
    latent_dim: int
    parameters: tuple = ()


def pack(header, payload):
    if header.mode not in MODES:
        raise ValueError(f"unknown mode {header.mode!r}; choose one of {MODES}")
    body = (_FIXED.pack(MAGIC, VERSION, MODES.index(header.mode),
                        header.fingerprint[:FINGERPRINT_BYTES], header.image_size,
                        header.channels, header.latent_dim)
            + _PARAMETERS[header.mode].pack(*header.parameters) + bytes(payload))
    return body + _CHECKSUM.pack(zlib.crc32(body))


def parse(data):
    """bytes -> (Header, payload bytes); raises FormatError saying what is wrong."""
    data = bytes(data)
    if not data:
        raise FormatError("empty file")
    if len(data) < len(MAGIC) or data[:len(MAGIC)] != MAGIC:
        raise FormatError("not a .cvae file (wrong magic bytes)")
    if len(data) < _FIXED.size + _CHECKSUM.size:
        raise FormatError(f"truncated: {len(data)} bytes is shorter than any .cvae header")
    _, version, mode_index, fingerprint, image_size, channels, latent_dim = \
        _FIXED.unpack_from(data)
    if version != VERSION:
        raise FormatError(f"unsupported format version {version} (this cvae reads version "
                          f"{VERSION})")
    body, (checksum,) = data[:-_CHECKSUM.size], _CHECKSUM.unpack(data[-_CHECKSUM.size:])
    if zlib.crc32(body) != checksum:
        raise FormatError("corrupted or truncated: the CRC-32 does not match")
    if mode_index >= len(MODES):
        raise FormatError(f"unknown quantization mode {mode_index}")
    mode = MODES[mode_index]
    parameters = _PARAMETERS[mode]
    if len(body) < _FIXED.size + parameters.size:
        raise FormatError("truncated: the quantization parameters are missing")
    values = parameters.unpack_from(body, _FIXED.size)
    header = Header(mode, fingerprint, image_size, channels, latent_dim, values)
    return header, body[_FIXED.size + parameters.size:]
