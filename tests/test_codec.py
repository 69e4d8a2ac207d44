"""The face codec: entropy coder, file format, quantization modes, calibration."""

import math
import struct
import zlib

import numpy as np
import pytest

import cvae
from cvae.codec import (
    DEFAULT_QUALITY,
    QUALITY_LEVELS,
    Codec,
    CodecTable,
    calibrate,
    entropy_coding,
    load_codec,
    table_path,
    weights_sha256,
)
from cvae.codec import format as codec_format
from cvae.codec.format import FormatError, Header
from cvae.errors import CvaeError
from cvae.model.saving import load_model, save_model
from cvae.model.vae import VAE
from tests.helpers import TINY, smooth_images


def _quantized_gaussian_bits(symbols, stds):
    """-log2 P of integer symbols under N(0, std^2) quantized to integers."""
    bits = 0.0
    for symbol, std in zip(symbols, stds):
        upper = 0.5 * (1 + math.erf((symbol + 0.5) / (std * math.sqrt(2))))
        lower = 0.5 * (1 + math.erf((symbol - 0.5) / (std * math.sqrt(2))))
        bits -= math.log2(upper - lower)
    return bits


def test_the_coder_is_lossless_and_near_the_ideal_length():
    rng = np.random.default_rng(0)
    total_bytes = total_bits = 0
    for _ in range(200):
        count = int(rng.integers(0, 150))
        stds = rng.uniform(0.2, 20, count)
        symbols = np.clip(np.round(rng.normal(0, stds)), -60, 60).astype(int)
        data = entropy_coding.encode(symbols, stds, 60)
        np.testing.assert_array_equal(entropy_coding.decode(data, stds, 60), symbols)
        bits = _quantized_gaussian_bits(symbols, stds)
        assert 8 * len(data) <= bits + 40  # At worst about one 32-bit word more.
        total_bytes, total_bits = total_bytes + len(data), total_bits + bits
    assert total_bytes <= total_bits / 8 + 200 * 1.0  # On average within a byte.


def test_the_coder_is_deterministic_and_rejects_bad_input():
    rng = np.random.default_rng(1)
    stds = rng.uniform(0.5, 5, 30)
    symbols = np.round(rng.normal(0, stds)).astype(int)
    assert entropy_coding.encode(symbols, stds, 40) == entropy_coding.encode(symbols, stds, 40)
    for length in range(0, 40):  # Garbage decodes to symbols in range or a ValueError.
        try:
            decoded = entropy_coding.decode(rng.bytes(length), stds, 40)
        except ValueError:
            continue
        assert len(decoded) == len(stds) and np.all(np.abs(decoded) <= 40)
    with pytest.raises(ValueError):
        entropy_coding.encode([50], [1.0], 40)
    with pytest.raises(ValueError):
        entropy_coding.encode([1, 2], [1.0], 40)


HEADER = Header("entropy", b"\x01\x02\x03\x04", (1.5,))


def test_the_format_round_trips_and_matches_its_documented_layout():
    data = codec_format.pack(HEADER, b"payload")
    assert data[:4] == b"CVAE" and data[4] == 2 and data[5] == 2
    assert struct.unpack("<I", data[-4:])[0] == zlib.crc32(data[:-4])
    assert len(data) == codec_format.HEADER_BYTES["entropy"] + len(b"payload")
    assert codec_format.parse(data) == (HEADER, b"payload")


def _with_crc(body):
    return body + struct.pack("<I", zlib.crc32(body))


@pytest.mark.parametrize("damage, message", [
    (lambda data: b"", "empty file"),
    (lambda data: b"GIF89a" + data[6:], "wrong magic"),
    (lambda data: data[:9], "truncated"),
    (lambda data: data[:-1], "CRC"),
    (lambda data: data[:-5] + bytes([data[-5] ^ 1]) + data[-4:], "CRC"),
    (lambda data: _with_crc(data[:4] + b"\x03" + data[5:-4]), "unsupported format version 3"),
    (lambda data: _with_crc(data[:4] + b"\x01" + data[5:-4]), "version 1, written by cvae 0.1"),
    (lambda data: _with_crc(data[:5] + b"\x09" + data[6:-4]), "unknown quantization mode"),
    (lambda data: _with_crc(data[:11]), "parameters are missing"),
])
def test_the_parser_names_each_corruption(damage, message):
    with pytest.raises(FormatError, match=message):
        codec_format.parse(damage(codec_format.pack(HEADER, b"payload")))


def test_every_truncation_and_bit_flip_is_rejected():
    data = codec_format.pack(HEADER, b"some payload bytes")
    for length in range(len(data)):
        with pytest.raises(FormatError):
            codec_format.parse(data[:length])
    for position in range(len(data)):
        for bit in range(8):
            damaged = bytearray(data)
            damaged[position] ^= 1 << bit
            with pytest.raises(FormatError):
                codec_format.parse(bytes(damaged))


@pytest.fixture(scope="module")
def model():
    return VAE(TINY, seed=0)


@pytest.fixture(scope="module")
def table(model):
    # Dimension 1 unused: it must cost nothing and decode to the prior mean.
    return CodecTable(posterior_std=(0.1, 1.0, 0.05, 0.2), active=(True, False, True, True),
                      step=1.0, weights_sha256=weights_sha256(model))


def test_random_bytes_give_only_clean_errors(model, table):
    codec = Codec(model, table)
    rng = np.random.default_rng(2)
    good = codec.compress_batch(smooth_images(1), "entropy")[0]
    candidates = [rng.bytes(int(n)) for n in rng.integers(0, 60, 300)]
    candidates += [good[:4] + rng.bytes(len(good) - 4) for _ in range(100)]
    for data in candidates:
        with pytest.raises(CvaeError):
            codec.latent_code(data)


@pytest.mark.parametrize("mode", ["float16", "int8", "entropy"])
def test_each_mode_round_trips_within_its_quantization_error(model, table, mode):
    codec = Codec(model, table)
    images = smooth_images(6, seed=3)
    z_mean, _ = model.encode(images)
    files = codec.compress_batch(images, mode)
    codes = np.stack([codec.latent_code(data) for data in files])
    if mode == "float16":
        np.testing.assert_allclose(codes, z_mean, rtol=1e-3, atol=1e-4)
    elif mode == "int8":
        spread = z_mean.max(axis=1, keepdims=True) - z_mean.min(axis=1, keepdims=True)
        assert np.all(np.abs(codes - z_mean) <= spread / 255 + 0.02)
    else:
        steps = np.array(table.posterior_std) * table.step
        active = np.array(table.active)
        assert np.all(np.abs(codes - z_mean)[:, active] <= steps[active] / 2 + 1e-9)
        assert np.all(codes[:, ~active] == 0)
    np.testing.assert_array_equal(codec.decompress_batch(files), codec.decode(codes))
    expected_size = {"float16": 8, "int8": 4}.get(mode)
    if expected_size:
        assert all(len(f) == codec_format.HEADER_BYTES[mode] + expected_size for f in files)


def test_the_simple_api_and_a_coarser_step(model, table):
    image = smooth_images(1, seed=4)[0]
    fine = cvae.compress(image, model, step=0.05, table=table)
    coarse = cvae.compress(image, model, step=4.0, table=table)
    assert len(coarse) < len(fine)
    restored = cvae.decompress(fine, model, table=table)
    assert restored.shape == image.shape and restored.dtype == np.uint8


def test_a_byte_budget_gives_the_finest_step_that_fits(model, table):
    codec = Codec(model, table)
    images = smooth_images(3, seed=5)
    # Codes far from the prior's mean, so that finer steps cost more bytes.
    z_mean = np.random.default_rng(5).normal(0, 2, (3, 4))
    roomy = [codec.pack(code, max_bytes=1000) for code in z_mean]
    tight = [codec.pack(code, max_bytes=len(data) - 1) for code, data in zip(z_mean, roomy)]
    for loose_file, tight_file in zip(roomy, tight):
        assert len(tight_file) < len(loose_file)
        header, _ = codec_format.parse(tight_file)
        assert header.parameters[0] > codec_format.parse(loose_file)[0].parameters[0]
    with pytest.raises(CvaeError, match="cannot fit in 10 bytes"):
        codec.pack(z_mean[0], max_bytes=10)
    with pytest.raises(CvaeError, match="entropy mode"):
        codec.compress_batch(images, "int8", max_bytes=100)


def test_a_file_from_another_model_or_table_is_refused(model, table):
    data = Codec(model, table).compress_batch(smooth_images(1), "entropy")[0]
    other = VAE(TINY, seed=1)
    other_table = CodecTable(table.posterior_std, table.active, 1.0, weights_sha256(other))
    with pytest.raises(FormatError, match="another model"):
        Codec(other, other_table).latent_code(data)
    retuned = CodecTable((0.2,) + table.posterior_std[1:], table.active, 1.0,
                         table.weights_sha256)
    with pytest.raises(FormatError, match="another model"):
        Codec(model, retuned).latent_code(data)
    with pytest.raises(CvaeError, match="no codec table"):
        Codec(model).latent_code(data)
    float16 = Codec(model).compress_batch(smooth_images(1), "float16")[0]
    with pytest.raises(FormatError, match="another model"):
        Codec(other).latent_code(float16)
    with pytest.raises(CvaeError, match="other weights"):
        Codec(other, table)


def test_calibration_picks_a_step_and_travels_with_the_model(tmp_path, tiny_images):
    import keras

    keras.utils.set_random_seed(0)  # fit's shuffling too: the same tiny model every run.
    trained = VAE(TINY.replace(decoder_scale="learned"), seed=0)
    trained.compile(optimizer=keras.optimizers.Adam(3e-3))
    trained.fit(tiny_images, batch_size=16, epochs=8, verbose=0)
    table = calibrate(trained, tiny_images, steps=(0.01, 0.5, 1.0, 2.0, 8.0))
    assert any(table.active)
    measured = table.calibration["steps"]
    assert measured["8.0"]["bytes"] <= measured["0.5"]["bytes"]
    unquantized = table.calibration["unquantized_psnr"]
    for level, max_loss in QUALITY_LEVELS.items():
        step = table.step_for(level)
        assert step == 0.01 or unquantized - measured[str(step)]["psnr"] <= max_loss
        coarser = [s for s in (0.5, 1.0, 2.0, 8.0) if s > step]
        assert all(unquantized - measured[str(s)]["psnr"] > max_loss for s in coarser)
    assert table.step_for("low") >= table.step_for("medium") >= table.step_for("high")
    assert table.step == table.step_for(DEFAULT_QUALITY)

    path = tmp_path / "model.keras"
    save_model(trained, path)
    table.save(table_path(path))
    codec = load_codec(path)  # The table is found beside the model.
    assert codec.table == table
    image = tiny_images[0]
    restored = cvae.decompress(cvae.compress(image, codec.model, table=codec.table),
                               codec.model, table=codec.table)
    assert restored.shape == image.shape
    assert not hasattr(load_model(path), "codec_table")  # load_model loads a model only.

    save_model(VAE(TINY.replace(decoder_scale="learned"), seed=5), path)  # New weights.
    with pytest.warns(UserWarning, match="other weights"):
        assert load_codec(path).table is None


def test_a_bfloat16_model_decodes_alike_on_both_runtimes(tmp_path):
    # The LiteRT files compute in float32, and bfloat16 rounds differently on
    # CPUs that have it and on those that emulate it: a file must still decode
    # to the same image wherever it is opened.
    from cvae.codec import load_codec
    from cvae.codec.litert import write_litert_files

    path = tmp_path / "model.keras"
    save_model(VAE(TINY, seed=0, dtype="mixed_bfloat16"), path)
    write_litert_files(load_model(path), path)
    codes = np.random.default_rng(0).normal(0, 2, (64, TINY.latent_dim)).astype(np.float32)
    keras_codec = load_codec(path, runtime="keras")
    in_float32 = load_model(path, precision="float32").decode(codes)
    assert np.abs(keras_codec.model.decode(codes) - in_float32).max() < 1e-5
    by_keras = keras_codec.decode(codes).astype(np.int16)
    by_litert = load_codec(path, runtime="litert").decode(codes).astype(np.int16)
    assert np.abs(by_keras - by_litert).max() <= 1
    assert cvae.load_model(path).dtype_policy.name == "mixed_bfloat16"  # The file is unchanged.


def test_the_detail_layer_brings_the_face_back_closer(model, table):
    from cvae.codec import detail
    from cvae.evaluation import metrics

    codec = Codec(model, table)
    images = smooth_images(4, seed=6)
    code_only = codec.decompress_batch(codec.compress_batch(images, "entropy"))
    files = codec.compress_batch(images, "detail", rung=len(detail.RUNGS) - 1)
    assert all(codec_format.parse(data)[0].mode == "detail" for data in files)
    restored = codec.decompress_batch(files)
    def psnr(decoded):
        return float(np.mean(metrics.psnr(images / 255.0, decoded / 255.0)))
    # The untrained model's blur is far off; the finest rung's difference
    # picture (larger than these 16-px faces) restores them closely.
    assert psnr(restored) > psnr(code_only) + 10
    # The layer sits on the same code: the code a detail file holds is the entropy file's.
    entropy_files = codec.compress_batch(images, "entropy")
    for detail_file, entropy_file in zip(files, entropy_files):
        np.testing.assert_array_equal(codec.latent_code(detail_file),
                                      codec.latent_code(entropy_file))
    with pytest.raises(CvaeError, match="no detail rung"):
        codec.compress_batch(images, "detail", rung=len(detail.RUNGS))
    with pytest.raises(CvaeError, match="detail mode"):
        codec.compress_batch(images, "entropy", rung=0)


def test_a_larger_budget_climbs_the_ladder_and_every_file_fits(model, table):
    from cvae.evaluation import metrics

    codec = Codec(model, table)
    images = smooth_images(4, seed=7)
    closeness, sizes = [], []
    for budget in (30, 60, 120, 240, 480):
        files = codec.compress_batch(images, max_bytes=budget)
        assert all(len(data) <= budget for data in files)
        sizes.append(np.mean([len(data) for data in files]))
        decoded = codec.decompress_batch(files)
        closeness.append(float(np.mean(metrics.psnr(images / 255.0, decoded / 255.0))))
    assert codec_format.parse(codec.compress_batch(images, max_bytes=30)[0])[0].mode == "entropy"
    assert codec_format.parse(codec.compress_batch(images, max_bytes=480)[0])[0].mode == "detail"
    assert sizes == sorted(sizes) and closeness[-1] > closeness[0] + 5
    assert all(later >= earlier - 0.5 for earlier, later in zip(closeness, closeness[1:]))


def test_a_damaged_detail_layer_is_refused(model, table):
    codec = Codec(model, table)
    data = codec.compress_batch(smooth_images(1, seed=8), "detail", rung=0)[0]
    header, payload = codec_format.parse(data)
    code_payload, frame = codec_format.split_detail(payload)
    for broken in (codec_format.join_detail(code_payload, b""),
                   codec_format.join_detail(code_payload, b"\x00" * len(frame)),
                   bytes([200]) + payload[1:]):
        with pytest.raises(FormatError):
            codec.decompress_batch([codec_format.pack(header, broken)])
