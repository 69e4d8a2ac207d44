"""The anomaly score: its candidates, ROC AUC, and `cvae score`'s contract."""

import json

import keras
import numpy as np
import pytest

from cvae import anomaly
from cvae.cli import main
from cvae.model.saving import save_model
from cvae.model.vae import VAE
from tests.helpers import TINY, smooth_images, write_image_folder


def test_roc_auc_is_the_chance_a_positive_outscores_a_negative():
    assert anomaly.roc_auc([3, 4], [1, 2]) == 1.0
    assert anomaly.roc_auc([1, 2], [3, 4]) == 0.0
    assert anomaly.roc_auc([1, 1], [1, 1]) == 0.5  # Ties count half.
    assert anomaly.roc_auc([2, 0], [1]) == 0.5


@pytest.fixture(scope="module")
def trained():
    """A tiny model trained briefly on smooth face-like images."""
    keras.utils.set_random_seed(0)
    model = VAE(TINY, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    model.fit(smooth_images(256, seed=1), batch_size=32, epochs=15, verbose=0)
    return model


def test_only_the_complexity_correction_ranks_a_plain_image_as_the_odd_one(trained):
    face_like = smooth_images(8, seed=2)
    plain = np.full_like(face_like, 26)  # The blobs' background alone: simple, and familiar
    scale = anomaly.decoder_scale(trained, face_like)
    terms = {name: anomaly.score_terms(trained, images, trained.config.likelihood, scale)
             for name, images in (("face", face_like), ("plain", plain))}
    # The trap: a plain image is "likelier" than the training-like ones ...
    assert terms["plain"]["elbo"].mean() < terms["face"]["elbo"].mean()
    assert terms["plain"]["error"].mean() < terms["face"]["error"].mean()
    # ... until the likelihood is corrected for how simple the image is.
    assert terms["plain"]["complexity"].min() > terms["face"]["complexity"].max()


def test_a_calibrated_threshold_flags_its_share_and_the_cli_ranks_and_speaks_json(
        tmp_path, trained, capsys):
    model_path = tmp_path / "model.keras"
    save_model(trained, model_path)
    training = write_image_folder(tmp_path / "train", n=240, size=(16, 16), seed=3)
    arguments = ["calibrate-score", "--model", str(model_path), "--data", str(training),
                 "--score", "complexity"]
    assert main(arguments) == 0
    assert anomaly.score_path(model_path).is_file()
    assert main(arguments) == 1
    assert "exists (use --force" in capsys.readouterr().err
    folder = tmp_path / "mixed"
    write_image_folder(folder, n=2, size=(16, 16), seed=4)  # face_001.png at the top
    from PIL import Image

    Image.new("RGB", (16, 16), (128, 128, 128)).save(folder / "plain.png")
    (folder / "broken.png").write_text("not an image")
    capsys.readouterr()
    assert main(["score", str(folder), "--model", str(model_path), "--json",
                 "--align", "off"]) == 1
    out, err = capsys.readouterr()
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["file"].split("/")[-1] for line in lines][0] == "plain.png"  # Oddest first.
    assert all(set(line) >= {"file", "score", "outlier"} for line in lines)
    assert lines[0]["outlier"] and lines[0]["score"] >= lines[-1]["score"]
    errors = err.strip().splitlines()
    assert any("broken.png" in e for e in errors) and all(e.startswith("cvae: ") for e in errors)

    # compress warns of what does not look like a face, and compresses it still.
    (folder / "broken.png").unlink()
    assert main(["calibrate", "--model", str(model_path), "--data", str(training)]) == 0
    capsys.readouterr()
    assert main(["compress", str(folder), "--model", str(model_path), "-o",
                 str(tmp_path / "out"), "--align", "off", "--runtime", "keras"]) == 0
    warned = {line.split(": ")[2].split("/")[-1] for line in capsys.readouterr().err.splitlines()
              if "does not look like a face" in line}
    # Exactly the files that `cvae score` called outliers, the plain one among them.
    outliers = {line["file"].split("/")[-1] for line in lines if line["outlier"]}
    assert warned == outliers and "plain.png" in warned
    assert len(list((tmp_path / "out").glob("*.cvae"))) == len(lines)  # Compressed still.

    # So does the web demo, beside its result.
    from starlette.testclient import TestClient

    from cvae import serve
    from cvae.codec import load_codec

    client = TestClient(serve.create_app(load_codec(model_path, runtime="keras"),
                                         scorer=anomaly.scorer_beside(model_path)))
    for name in ("plain.png", "face_001.png"):
        result = client.post("/api/compress",
                             files={"image": (name, (folder / name).read_bytes())}).json()
        assert result["looks_like_a_face"] is (name not in outliers)


def test_scoring_without_a_threshold_says_how_to_make_one(tmp_path, capsys):
    model_path = tmp_path / "bare.keras"
    save_model(VAE(TINY, seed=0), model_path)
    assert main(["score", str(tmp_path), "--model", str(model_path)]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("cvae: error: no anomaly threshold") and "calibrate-score" in error


@pytest.mark.parametrize("likelihood", ["gaussian", "l1", "bernoulli"])
def test_the_numpy_terms_are_the_objectives(likelihood):
    # Scoring runs without a Keras backend (the LiteRT runtime); its terms
    # must stay those that training optimises (cvae.model.losses).
    from keras import ops

    from cvae.model import losses

    rng = np.random.default_rng(0)
    images = rng.random((3, 8, 8, 3)).astype(np.float32)
    reconstructions = rng.random((3, 8, 8, 3)).astype(np.float32)
    z_mean, z_log_var = rng.normal(size=(2, 3, 5)).astype(np.float32)
    np.testing.assert_allclose(
        anomaly.reconstruction_nll(images, reconstructions, likelihood, 0.3),
        ops.convert_to_numpy(losses.reconstruction_loss(images, reconstructions, likelihood, 0.3)),
        rtol=1e-5)
    np.testing.assert_allclose(anomaly.kl_divergence(z_mean, z_log_var),
                               ops.convert_to_numpy(losses.kl_divergence(z_mean, z_log_var)),
                               rtol=1e-5)


def test_compressing_with_a_score_shares_one_encoder_pass(tmp_path, trained, monkeypatch):
    from cvae.codec import load_codec
    from cvae.codec.batch import compress_files
    from cvae.data.image_files import list_image_files, load_images

    model_path = tmp_path / "model.keras"
    save_model(trained, model_path)
    codec = load_codec(model_path, runtime="keras")
    scorer = anomaly.calibrate_scorer(trained, smooth_images(64, seed=5), smooth_images(32, seed=6))
    folder = write_image_folder(tmp_path / "in", n=3, size=(16, 16), seed=7)
    files = list_image_files(folder)
    images, _ = load_images(files, 16)
    expected_files = codec.compress_batch(images, "int8")
    expected_scores = scorer(trained, images)

    passes, heard = [], {}
    real_encode = VAE.encode
    monkeypatch.setattr(VAE, "encode",
                        lambda self, *a, **k: passes.append(1) or real_encode(self, *a, **k))
    scorer.threshold = -np.inf  # Every image is heard of, with its score.
    written = compress_files(
        codec, files, tmp_path / "out", "int8", scorer=scorer,
        on_error=lambda path, error: pytest.fail(f"{path}: {error}"),
        on_outlier=lambda path, score, _: heard.update({path.name: score}))
    assert len(passes) == 1  # One batch, one encoder pass for the files and the scores.
    assert [target.read_bytes() for _, target, _, _ in written] == expected_files
    np.testing.assert_allclose([heard[path.name] for path, *_ in written], expected_scores,
                               rtol=1e-6)
