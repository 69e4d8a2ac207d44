"""The benchmark scripts measure what they say they measure."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from benchmarks import (  # noqa: E402
    adversarial_step,
    baseline,
    conv_transpose,
    inference_precision,
    step_profile,
)
from cvae.model.config import get_preset  # noqa: E402
from cvae.model.vae import VAE  # noqa: E402

REPOSITORY = Path(__file__).resolve().parent.parent


def test_baseline_is_the_seed_network():
    project = VAE(get_preset("seed"), seed=0, dtype="float32")
    reference = baseline.build_model()
    for ours, theirs in ((project.encoder, reference.encoder), (project.decoder, reference.decoder)):
        assert ours.count_params() == theirs.count_params()


@pytest.mark.parametrize("filters, activation", [(4, "relu"), (3, None)])
def test_sub_pixel_rewrite_equals_conv2d_transpose(filters, activation):
    inputs = np.random.default_rng(0).normal(size=(2, 5, 6, 7)).astype("float32")
    native = keras.layers.Conv2DTranspose(filters, 3, strides=2, padding="same",
                                          activation=activation, dtype="float32")
    rewritten = conv_transpose.sub_pixel_layer_class()(filters, activation=activation,
                                                       dtype="float32")
    native(inputs), rewritten(inputs)
    rewritten.kernel.assign(native.kernel)
    rewritten.bias.assign(np.linspace(-1, 1, filters))
    native.bias.assign(rewritten.bias)
    np.testing.assert_allclose(rewritten(inputs), native(inputs), atol=1e-5)


def test_op_names_are_grouped_by_layer_kind():
    name = ("StatefulPartitionedCall/gradient_tape/decoder_1/conv2d_transpose_1_2/"
            "conv_transpose/Conv2DBackpropFilter:_MklNativeConv2DBackpropFilter")
    assert step_profile._group(name) == "decoder conv2d_transpose"
    assert step_profile._group("StatefulPartitionedCall/encoder_1/z_log_var_clamp/Tanh:Tanh") \
        == "encoder z_log_var_clamp"
    assert step_profile._group("StatefulPartitionedCall/adam/Sqrt:Sqrt") \
        == "loss, metrics and optimizer"


def test_step_profile_traces_both_precisions(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("<!-- step-profile-seed:begin -->\n<!-- step-profile-seed:end -->\n",
                      encoding="utf-8")
    # Its own process: it sets TensorFlow's threading, which only a fresh process can.
    # A small batch: bfloat16 is emulated, and slow, on CPUs without it.
    subprocess.run([sys.executable, "-m", "benchmarks.step_profile", "--steps", "1",
                    "--batch-size", "8", "--readme", str(readme)], check=True,
                   capture_output=True, timeout=300, cwd=REPOSITORY)
    section = readme.read_text(encoding="utf-8")
    assert "(batch 8, 1 traced steps" in section and "--steps 1 --batch-size 8`" in section
    for layer in ("decoder conv2d_transpose", "encoder conv2d", "loss, metrics and optimizer"):
        assert f"| {layer} |" in section
    assert "Conv2DBackpropInput |" in section


def test_the_entropy_coder_comparison_runs_both_coders_on_the_same_symbols(tmp_path):
    import json

    from benchmarks import entropy_coders
    from tests.helpers import tiny_model_file, write_image_folder

    model_path = tiny_model_file(tmp_path)
    folder = write_image_folder(tmp_path / "faces", n=6, size=(16, 16))
    doc = tmp_path / "doc.md"
    doc.write_text("<!-- entropy-coders:begin -->\n<!-- entropy-coders:end -->\n")
    out = tmp_path / "coders.json"
    assert entropy_coders.main(["--data", str(folder), "--model", str(model_path),
                                "--out", str(out), "--doc", str(doc)]) == 0
    results = json.loads(out.read_text())
    assert results["faces"] == 6
    coders = results["coders"]
    assert all(measured["exact"] for measured in coders.values())
    # Both are within a few bytes of the information content they code.
    for measured in coders.values():
        assert results["ideal_bytes_mean"] - 2 <= measured["payload_bytes_mean"]
        assert measured["payload_bytes_mean"] <= results["ideal_bytes_mean"] + 4
    assert "constriction range coder" in doc.read_text()


def test_the_adversarial_step_benchmark_times_each_case(tmp_path):
    readme = tmp_path / "speed.md"
    readme.write_text("<!-- adversarial-step:begin -->\n<!-- adversarial-step:end -->\n",
                      encoding="utf-8")
    assert adversarial_step.main(["--preset", "seed", "--image-size", "16", "--batch-size", "4",
                                  "--steps", "1", "--readme", str(readme)]) == 0
    section = readme.read_text(encoding="utf-8")
    for what, _ in adversarial_step.configurations(adversarial_step.get_preset("seed")):
        assert f"| {what} | " in section
    assert "| likelihood only (no term) | " in section and "| 1.00× |" in section


def test_the_inference_precision_benchmark_times_the_saved_and_the_auto_model(
        tmp_path, monkeypatch):
    from cvae import precision
    from cvae.model.saving import save_model
    from tests.helpers import TINY

    monkeypatch.setattr(precision, "cpu_has_bfloat16", lambda: False)
    path = tmp_path / "bfloat16.keras"
    save_model(VAE(TINY, seed=0, dtype="mixed_bfloat16"), path)
    readme = tmp_path / "speed.md"
    readme.write_text("<!-- inference-precision:begin -->\n<!-- inference-precision:end -->\n",
                      encoding="utf-8")
    assert inference_precision.main(["--model", str(path), "--batch-size", "4", "--rounds", "1",
                                     "--readme", str(readme)]) == 0
    section = readme.read_text(encoding="utf-8")
    assert "| task (this CPU lacks native bfloat16) | saved (mixed_bfloat16) | auto (float32) |" \
        in section
    assert "| generate 4 faces | " in section and "| reconstruct 4 images | " in section


@pytest.mark.slow  # Four `cvae score` processes.
def test_the_score_speed_benchmark_times_both_framings(tmp_path):
    from benchmarks import score_speed
    from cvae import anomaly
    from cvae.model.saving import save_model
    from tests.helpers import TINY, smooth_images, write_image_folder

    model = VAE(TINY, seed=0)
    path = tmp_path / "tiny.keras"
    save_model(model, path)
    anomaly.calibrate_scorer(model, smooth_images(32), smooth_images(16, seed=1)).save(
        anomaly.score_path(path))
    folder = write_image_folder(tmp_path / "faces", n=3, size=(16, 16))
    doc = tmp_path / "anomaly.md"
    doc.write_text("<!-- score-speed:begin -->\n<!-- score-speed:end -->\n", encoding="utf-8")
    assert score_speed.main(["--data", str(folder), "--model", str(path), "--repeats", "1",
                             "--out", str(tmp_path / "speed.json"), "--doc", str(doc)]) == 0
    section = doc.read_text(encoding="utf-8")
    assert "| framed already (`--align off`) | " in section
    assert "| found and framed (`--align auto`) | " in section
    assert json.loads((tmp_path / "speed.json").read_text())["images"] == 3


@pytest.mark.slow  # Two training processes.
def test_the_training_speed_benchmark_times_whole_processes_of_both(tmp_path):
    from benchmarks import training_speed
    from tests.helpers import write_image_folder

    folder = write_image_folder(tmp_path / "faces", n=8, size=(128, 128))
    doc = tmp_path / "speed.md"
    doc.write_text("<!-- training-speed:begin -->\n<!-- training-speed:end -->\n",
                   encoding="utf-8")
    assert training_speed.main(["--data", str(folder), "--images", "8", "--epochs", "1",
                                "--batch-size", "4", "--rounds", "1",
                                "--out", str(tmp_path / "speed.json"), "--doc", str(doc)]) == 0
    section = doc.read_text(encoding="utf-8")
    assert "| `cvae train --preset seed` | " in section and "| the slides' float32 code | " in section
    recorded = json.loads((tmp_path / "speed.json").read_text())
    assert len(recorded["seconds"]["cvae"]) == len(recorded["seconds"]["slides"]) == 1
