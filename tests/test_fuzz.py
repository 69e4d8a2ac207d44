"""Property-based fuzzing (Hypothesis) of everything that reads untrusted bytes:
the `.cvae` parser, the codec behind it, the arithmetic decoder, and the image
loader. Each may only succeed or fail with its own clean error, never crash
or hang."""

import io
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from cvae.codec import Codec, CodecTable, entropy_coding, weights_sha256
from cvae.codec import format as codec_format
from cvae.codec.format import FormatError, Header
from cvae.data import image_files
from cvae.errors import CvaeError
from cvae.model.vae import VAE
from tests.helpers import TINY, smooth_images

FAST = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def _with_crc(body):
    return body + struct.pack("<I", zlib.crc32(body))


# Bytes that look more and more like a real file: random, then a valid magic
# and version, then also a valid checksum over random fields.
untrusted = st.one_of(
    st.binary(max_size=200),
    st.binary(max_size=200).map(lambda tail: b"CVAE\x01" + tail),
    st.binary(min_size=10, max_size=120).map(lambda tail: _with_crc(b"CVAE\x01" + tail)),
)


@FAST
@given(untrusted)
def test_the_parser_only_ever_raises_its_own_error(content):
    try:
        header, payload = codec_format.parse(content)
    except FormatError:
        return
    assert header.mode in codec_format.MODES and isinstance(payload, bytes)


@pytest.fixture(scope="module")
def codec():
    model = VAE(TINY, seed=0)
    table = CodecTable((0.05, 0.1, 0.05, 0.2), (True, True, False, True), 1.0,
                       weights_sha256(model))
    return Codec(model, table)


@FAST
@given(st.binary(min_size=0, max_size=60), st.sampled_from(codec_format.MODES),
       st.floats(allow_nan=True, allow_infinity=True, width=16))
def test_well_formed_files_with_hostile_contents_fail_cleanly(codec, payload, mode, step):
    parameters = {"float16": (), "int8": (step, step), "entropy": (step,),
                  "detail": (step,)}[mode]
    header = Header(mode, codec.fingerprint(mode), parameters)
    content = codec_format.pack(header, payload)
    try:
        code = codec.latent_code(content)
        # The detail layer is read only when the file is decoded.
        image = codec.decompress_batch([content])[0] if mode == "detail" else None
    except CvaeError:
        return
    assert code.shape == (4,) and np.all(np.isfinite(code))
    assert image is None or image.dtype == np.uint8


@st.composite
def coded_messages(draw):
    bound = draw(st.integers(1, 500))
    count = draw(st.integers(0, 60))
    stds = draw(st.lists(st.floats(0.05, 1000), min_size=count, max_size=count))
    symbols = draw(st.lists(st.integers(-bound, bound), min_size=count, max_size=count))
    return symbols, stds, bound


@FAST
@given(coded_messages())
def test_the_coder_round_trips_any_message(message):
    symbols, stds, bound = message
    decoded = entropy_coding.decode(entropy_coding.encode(symbols, stds, bound), stds, bound)
    np.testing.assert_array_equal(decoded, symbols)


def _image_bytes(image_format):
    buffer = io.BytesIO()
    Image.fromarray(smooth_images(1, size=20)[0]).save(buffer, image_format)
    return buffer.getvalue()


SEEDS = [_image_bytes(f) for f in ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF")]


@pytest.mark.filterwarnings("ignore:Truncated File Read")  # Pillow, on a cut TIFF.
@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")  # Pillow, on a garbled header.
@FAST
@given(st.sampled_from(SEEDS), st.integers(0, 10_000), st.binary(max_size=16),
       st.integers(0, 2))
def test_the_image_loader_fails_only_with_the_errors_it_documents(seed, position, noise, kind):
    if kind == 0:
        content = seed[:position % (len(seed) + 1)]
    elif kind == 1:
        at = position % len(seed)
        content = seed[:at] + noise + seed[at + len(noise):]
    else:
        content = noise + seed
    try:
        image = image_files.load_image(io.BytesIO(content), 16)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return
    assert image.shape == (16, 16, 3) and image.dtype == np.uint8
