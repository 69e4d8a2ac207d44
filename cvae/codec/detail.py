"""The detail layer: what more bytes buy beyond the latent code.

The latent code alone gives a face of the right build and colouring, but
not always the right person (docs/codec.md, "The rate ladder"). The detail
layer sends the difference between the framed face and the code's own
reconstruction, at SIDE x SIDE pixels, as a lossy WebP picture (libwebp,
through Pillow): the decoder adds it back, upsampled, onto the
reconstruction. It starts from the model's prediction rather than from
nothing, so it costs fewer bytes than a thumbnail of the face itself, and the
model keeps the texture a thumbnail would blur away.

The WebP file is stored without its 20-byte RIFF container (the format
knows what it holds), and rebuilt before decoding.
"""

import io
import struct

import numpy as np
from PIL import Image

from cvae.errors import CvaeError

# The rungs of the ladder, smallest first: (side of the difference picture,
# WebP quality). The Pareto front of mean bytes against the identity judge's
# distance among 30 candidates (sides 16 to 64, qualities 10 to 90) on 200
# faces of the shipped model's held-out training share, about 120 to 1,300
# bytes in all over the code at its default step (`research/identity/
# ladder_study.py choose`; a few points of the front that cost the same as a
# neighbour are left out).
RUNGS = ((16, 30), (16, 50), (16, 70), (32, 10), (32, 20), (32, 30), (48, 10), (32, 50),
         (48, 20), (64, 10), (48, 30), (64, 20), (48, 50), (64, 30), (48, 70), (64, 50),
         (64, 70), (64, 90))
# The difference is stored as 128 + GAIN * (face - reconstruction).
GAIN = 1.0
_RIFF = struct.Struct("<4sI4s4sI")
_RIFF_BYTES = _RIFF.size
# libwebp's slowest, best-compressing method: the pictures are tiny.
_WEBP_METHOD = 6


def encode(original, reconstruction, side, quality):
    """The VP8 frame of the difference between two uint8 (H, W, 3) images at
    side x side pixels, without its RIFF container."""
    difference = _shrink(original, side) - _shrink(reconstruction, side)
    picture = np.clip(np.round(128.0 + GAIN * difference), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, "WEBP", quality=int(quality), method=_WEBP_METHOD)
    data = buffer.getvalue()
    tag, _, form, chunk, size = _RIFF.unpack_from(data)
    if tag != b"RIFF" or form != b"WEBP" or chunk != b"VP8 ":
        raise CvaeError(f"libwebp wrote an unexpected layout ({chunk!r}); cannot strip it")
    return data[_RIFF_BYTES:_RIFF_BYTES + size]


def apply(reconstruction, frame):
    """The uint8 reconstruction (H, W, 3) with the difference in `frame`
    (from `encode`) added back; ValueError if the frame is not a picture."""
    difference = _decode(frame)
    height, width = reconstruction.shape[:2]
    upsampled = np.stack([np.asarray(Image.fromarray(difference[..., channel]).resize(
        (width, height), Image.BICUBIC)) for channel in range(difference.shape[-1])], axis=-1)
    return np.clip(np.round(reconstruction.astype(np.float32) + upsampled), 0,
                   255).astype(np.uint8)


def _decode(frame):
    padding = b"\0" if len(frame) % 2 else b""
    data = _RIFF.pack(b"RIFF", 4 + 8 + len(frame) + len(padding), b"WEBP", b"VP8 ",
                      len(frame)) + bytes(frame) + padding
    try:
        with Image.open(io.BytesIO(data), formats=["WEBP"]) as picture:
            picture = picture.convert("RGB")
            if max(picture.size) > 256:
                raise ValueError(f"a {picture.size} detail picture is larger than any rung's")
            pixels = np.asarray(picture, np.float32)
    except (OSError, SyntaxError) as error:
        raise ValueError(f"the detail layer is not a WebP picture ({error})") from None
    return (pixels - 128.0) / GAIN


def _shrink(image, side):
    """A uint8 image, area-averaged to side x side, as float32."""
    return np.stack([np.asarray(Image.fromarray(image[..., channel].astype(np.float32)).resize(
        (side, side), Image.BOX)) for channel in range(image.shape[-1])], axis=-1)
