"""The `.cvae` file format, version 2: packing and strict parsing.

All integers are little-endian. Offsets in bytes:

    0   4  magic, b"CVAE"
    4   1  format version (2)
    5   1  quantization mode: 0 float16, 1 int8, 2 entropy, 3 detail (entropy
           plus the detail layer, cvae.codec.detail)
    6   4  model fingerprint: the first 4 bytes of the SHA-256 of the model's
           weights (and, for entropy, of its codec table); it names the
           model, and with it the image size and the latent dimension
    10  q  quantization parameters, by mode:
             float16  none (q = 0)
             int8     lowest and highest level, float16 each (q = 4)
             entropy  the step in posterior standard deviations, float16 (q = 2)
             detail   the same step (q = 2)
    10+q n payload (the rest, up to the checksum):
             float16  latent_dim float16 values
             int8     latent_dim uint8 levels
             entropy  the range-coded symbols of the active dimensions
                      (cvae.codec.entropy_coding)
             detail   one byte L, then L bytes as entropy's, then the detail
                      layer: a lossy WebP picture's VP8 frame, without its
                      RIFF container; its size names the rung
    end-4 4 CRC-32 of every byte before it

Version 1 (cvae 0.1) also stored the image side, channels and latent
dimension (5 bytes) and used another arithmetic coder; it is refused with a
message saying so.
"""

import dataclasses
import struct
import zlib

from cvae.errors import CvaeError

MAGIC = b"CVAE"
VERSION = 2
MODES = ("float16", "int8", "entropy", "detail")
FINGERPRINT_BYTES = 4
_FIXED = struct.Struct("<4sBB4s")
_CHECKSUM = struct.Struct("<I")
_PARAMETERS = {"float16": struct.Struct("<"), "int8": struct.Struct("<ee"),
               "entropy": struct.Struct("<e"), "detail": struct.Struct("<e")}
HEADER_BYTES = {mode: _FIXED.size + _PARAMETERS[mode].size + _CHECKSUM.size for mode in MODES}


class FormatError(CvaeError):
    """The bytes are not a valid `.cvae` file."""


@dataclasses.dataclass(frozen=True)
class Header:
    mode: str
    fingerprint: bytes
    parameters: tuple = ()


def pack(header, payload):
    if header.mode not in MODES:
        raise ValueError(f"unknown mode {header.mode!r}; choose one of {MODES}")
    body = (_FIXED.pack(MAGIC, VERSION, MODES.index(header.mode),
                        header.fingerprint[:FINGERPRINT_BYTES])
            + _PARAMETERS[header.mode].pack(*header.parameters) + bytes(payload))
    return body + _CHECKSUM.pack(zlib.crc32(body))


def parse(data):
    """bytes -> (Header, payload bytes); raises FormatError saying what is wrong."""
    data = bytes(data)
    if not data:
        raise FormatError("empty file")
    if len(data) < len(MAGIC) or data[:len(MAGIC)] != MAGIC:
        raise FormatError("not a .cvae file (wrong magic bytes)")
    if len(data) <= len(MAGIC):
        raise FormatError("truncated: the file ends after its magic bytes")
    version = data[len(MAGIC)]
    if version == 1:
        raise FormatError("format version 1, written by cvae 0.1; this cvae reads version 2 "
                          "(decompress it with cvae 0.1 and its model, then compress the "
                          "image again)")
    if version != VERSION:
        raise FormatError(f"unsupported format version {version} (this cvae reads version "
                          f"{VERSION})")
    if len(data) < _FIXED.size + _CHECKSUM.size:
        raise FormatError(f"truncated: {len(data)} bytes is shorter than any .cvae header")
    _, _, mode_index, fingerprint = _FIXED.unpack_from(data)
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
    return Header(mode, fingerprint, values), body[_FIXED.size + parameters.size:]


def join_detail(code_payload, frame):
    """The detail mode's payload: the code's entropy payload, then the frame."""
    if len(code_payload) > 255:
        raise ValueError(f"a code payload of {len(code_payload)} bytes does not fit the "
                         f"detail mode's length byte")
    return bytes([len(code_payload)]) + bytes(code_payload) + bytes(frame)


def split_detail(payload):
    """The detail mode's payload -> (code payload, frame); FormatError if short."""
    if not payload or len(payload) < 1 + payload[0]:
        raise FormatError("truncated: the detail file's code is cut short")
    return payload[1:1 + payload[0]], payload[1 + payload[0]:]
