import json

import keras
import numpy as np
import pytest

from cvae.cli import main
from cvae.evaluation.evaluate import evaluate, likelihood_bounds, load_inception
from cvae.model.saving import save_model
from cvae.model.vae import VAE
from tests.helpers import TINY, smooth_images, write_image_folder


@pytest.fixture(scope="module")
def tiny_model():
    keras.utils.set_random_seed(0)
    model = VAE(TINY, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.fit(smooth_images(64), epochs=3, batch_size=16, verbose=0)
    return model


def test_the_iwae_bound_is_tighter_than_the_elbo(tiny_model):
    images = smooth_images(32, seed=3)
    single = likelihood_bounds(tiny_model, images, samples=1, seed=0)
    many = likelihood_bounds(tiny_model, images, samples=32, seed=0)
    assert many["iwae_nll"] < many["negative_elbo"]
    assert many["iwae_nll"] < single["iwae_nll"]
    assert many["negative_elbo"] == pytest.approx(many["reconstruction_nll"] + many["kl"])
    # One importance sample is the ELBO itself (with a Monte Carlo KL).
    assert single["iwae_nll"] == pytest.approx(single["negative_elbo"], rel=0.05)
    assert 0 < many["bits_per_dim"] < single["bits_per_dim_elbo"]


def test_evaluate_scores_the_model_beside_pca_and_the_floor(tiny_model):
    images = smooth_images(40, seed=4)
    results = evaluate(tiny_model, images, train_images=smooth_images(64, seed=5), log=lambda _: None)
    assert results["images"] == 40 and results["latent_dim"] == 4
    assert len(results["latent"]["kl_per_dimension"]) == 4
    assert 0 <= results["latent"]["active_units"] <= 4
    assert results["pca"]["components"] == 4
    assert 10 < results["pca"]["reconstruction"]["psnr"] < 60
    assert results["real_vs_real"]["swd"] >= 0
    assert "psnr_64" not in results["reconstruction"]  # 16-pixel images are not downsampled.


def test_fid_runs_on_a_randomly_initialised_inception(tmp_path, tiny_model):
    # The smallest input InceptionV3 takes keeps this fast; real FID uses 299.
    weights = tmp_path / "inception.weights.h5"
    keras.applications.InceptionV3(include_top=False, pooling="avg", weights=None,
                                   input_shape=(75, 75, 3)).save_weights(weights)
    inception = load_inception(weights, input_size=75)
    results = evaluate(tiny_model, smooth_images(8, seed=6), train_images=smooth_images(16),
                       iwae_samples=2, inception=inception, log=lambda _: None)
    assert set(results["fid"]) == {"model", "real_vs_real", "pca"}
    assert all(np.isfinite(value) and value >= -1e-6 for value in results["fid"].values())


def test_evaluate_json_on_a_folder_reports_every_field(tmp_path, capsys):
    model_path = tmp_path / "tiny.keras"
    save_model(VAE(TINY, seed=0), model_path)
    folder = write_image_folder(tmp_path / "faces", n=12)
    code = main(["evaluate", "--data", str(folder), "--model", str(model_path), "--json",
                 "--train-data", str(folder), "--iwae-samples", "4"])
    assert code == 0
    results = json.loads(capsys.readouterr().out)
    assert set(results) == {"images", "image_shape", "latent_dim", "reconstruction", "likelihood",
                            "latent", "samples", "real_vs_real", "reconstruction_swd", "pca", "fid"}
    assert set(results["reconstruction"]) == {"mse", "psnr", "ssim"}
    assert set(results["likelihood"]) == {"negative_elbo", "reconstruction_nll", "kl", "iwae_nll",
                                          "iwae_samples", "dequantized", "bits_per_dim",
                                          "bits_per_dim_elbo"}
    assert results["likelihood"]["iwae_samples"] == 4
    assert set(results["samples"]) == {"swd", "swd_levels", "face_rate"}
    assert 0.0 <= results["samples"]["face_rate"] <= 1.0
    assert set(results["pca"]) == {"components", "fitted_on", "reconstruction", "samples",
                                   "reconstruction_swd"}
    assert results["fid"] is None  # Only with --inception-weights.


def test_evaluate_validation_split_scores_only_the_part_training_held_out(tmp_path, capsys):
    from cvae.data import datasets, image_files

    model_path = tmp_path / "tiny.keras"
    save_model(VAE(TINY, seed=0), model_path)
    folder = write_image_folder(tmp_path / "faces", n=40)
    held_out = sum(datasets.in_validation(path.relative_to(folder).as_posix(), 0.3)
                   for path in image_files.list_image_files(folder))
    assert 4 <= held_out < 40
    assert main(["evaluate", "--data", str(folder), "--model", str(model_path), "--json",
                 "--iwae-samples", "2", "--validation-split", "0.3"]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == held_out


def test_evaluate_runs_as_saved_unless_asked_for_auto(tmp_path, capsys, monkeypatch):
    from cvae import precision

    model_path = tmp_path / "bfloat16.keras"
    save_model(VAE(TINY, seed=0, dtype="mixed_bfloat16"), model_path)
    folder = write_image_folder(tmp_path / "faces", n=8)
    monkeypatch.setattr(precision, "cpu_has_bfloat16", lambda: False)

    def reconstruction(*options):
        assert main(["evaluate", "--data", str(folder), "--model", str(model_path), "--json",
                     "--iwae-samples", "2", *options]) == 0
        return json.loads(capsys.readouterr().out)["reconstruction"]

    auto = reconstruction("--precision", "auto")
    assert auto == reconstruction("--precision", "float32") and reconstruction() != auto


def test_evaluate_prints_a_table(tmp_path, capsys):
    model_path = tmp_path / "tiny.keras"
    save_model(VAE(TINY, seed=0), model_path)
    folder = write_image_folder(tmp_path / "faces", n=8)
    assert main(["evaluate", "--data", str(folder), "--model", str(model_path),
                 "--iwae-samples", "2"]) == 0
    report = capsys.readouterr().out
    for text in ("PSNR (dB)", "sample SWD", "real-vs-real", "IWAE bound (K=2)", "active units",
                 "PCA baseline: not computed"):
        assert text in report


@pytest.mark.parametrize("arguments, message", [
    (["--data", "{missing}"], "no such file or directory"),
    (["--data", "{folder}", "--model", "{missing}"], "no such model file"),
    (["--data", "{folder}", "--inception-weights", "{missing}"], "no such Inception weights file"),
    (["--data", "{folder}", "--max-images", "2"], "at least 4 images"),
    (["--data", "{folder}", "--inception-weights", "{folder}/face_001.png"],
     "cannot load Inception weights"),
    (["--data", "{folder}", "--train-data", "{few}"], "too few for a PCA with 4 components"),
    (["--data", "{folder}", "--validation-split", "0.01"], "evaluation needs 4"),
])
def test_evaluate_bad_input_is_one_line(tmp_path, capsys, arguments, message):
    model_path = tmp_path / "tiny.keras"
    save_model(VAE(TINY, seed=0), model_path)
    folder = write_image_folder(tmp_path / "faces", n=6)
    few = write_image_folder(tmp_path / "few", n=3)
    values = {"missing": str(tmp_path / "missing"), "folder": str(folder), "few": str(few)}
    arguments = [argument.format(**values) for argument in arguments]
    if "--model" not in arguments:
        arguments += ["--model", str(model_path)]
    assert main(["evaluate", *arguments]) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and message in error[0]
