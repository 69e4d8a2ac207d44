"""The model in saved_models/ loads by default and works (its quality is measured by
scripts/results.py, not here)."""

import numpy as np

from cvae.model.config import DEFAULT_PRESET, get_preset
from cvae.model.saving import DEFAULT_MODEL_PATH, load_model, save_model
from cvae.model.vae import VAE
from cvae.sampling.samplers import default_sampler
from tests.helpers import TINY


def test_the_shipped_model_is_the_default_and_decodes_faces():
    assert DEFAULT_MODEL_PATH.is_file()
    model = load_model()
    # The default preset's first stage, with a second stage added by `cvae
    # second-stage` (which samples with its noise); the KL warm-up, a training
    # setting, is 0 once fine-tuned.
    assert model.config.second_stage_noise > 0
    # The shipped model predates the bounded posterior, which only new training needs.
    assert (model.config.replace(second_stage_units=(), second_stage_noise=0.0, kl_warmup_steps=0)
            == get_preset(DEFAULT_PRESET).replace(kl_warmup_steps=0, bounded_posterior=False))
    assert default_sampler(model) == "second-stage"
    assert getattr(model, "optimizer", None) is None  # Exported without optimizer state.
    faces = model.generate(2, seed=0)
    assert faces.shape == (2, 128, 128, 3)
    assert np.all(np.isfinite(faces)) and faces.min() >= 0 and faces.max() <= 1
    assert not np.allclose(faces[0], faces[1])
    assert DEFAULT_MODEL_PATH.stat().st_size < 50e6


def test_cvae_model_overrides_the_default(tmp_path, monkeypatch):
    path = tmp_path / "tiny.keras"
    save_model(VAE(TINY, seed=0), path)
    monkeypatch.setenv("CVAE_MODEL", str(path))
    assert load_model().config == TINY


def test_the_shipped_model_carries_its_codec_table():
    import cvae
    from cvae.codec.litert import LiteModel, litert_status

    # Its LiteRT files match it, so compress and decompress start without TensorFlow.
    assert litert_status(DEFAULT_MODEL_PATH) == (True, "")
    codec = cvae.load_codec()
    assert isinstance(codec.model, LiteModel)
    assert codec.table is not None  # Made for exactly these weights.
    # ... as the Keras model computes them, so both runtimes read its files.
    from cvae.codec import weights_sha256
    assert codec.table.weights_sha256 == codec.model.weights_sha256 == weights_sha256(load_model())
    face = (load_model().generate(1, seed=0)[0] * 255).round().astype(np.uint8)
    data = codec.compress_batch(face[None])[0]
    assert len(data) <= 128
    assert codec.decompress_batch([data])[0].shape == (128, 128, 3)


def test_the_shipped_threshold_passes_a_face_and_flags_a_plain_image(tmp_path, capsys):
    import json
    from pathlib import Path

    from PIL import Image

    from cvae.cli import main

    astronaut = Path(__file__).resolve().parent.parent / "data" / "astronaut.png"
    Image.new("RGB", (300, 300), (250, 250, 250)).save(tmp_path / "white.png")
    assert main(["score", str(astronaut), str(tmp_path / "white.png"), "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    verdicts = {Path(line["file"]).name: line["outlier"] for line in lines}
    assert verdicts == {"white.png": True, "astronaut.png": False}
    assert Path(lines[0]["file"]).name == "white.png"  # The oddest first.
