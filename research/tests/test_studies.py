"""The studies' scripts (research/): bad input ends in one line, and each
writes the table it promises. Not in the default test run (pyproject's
testpaths): `python3 -m pytest research/tests`."""

import json
from pathlib import Path

import numpy as np
import pytest

from cvae.errors import run_command
from tests.test_scripts import _script, assert_rejects_a_missing_data_folder


@pytest.mark.parametrize("script, arguments", [
    ("research/lectures/experiments.py", ["--data", "{missing}", "--val-data", "{missing}",
                                          "--runs", "{runs}"]),
    ("research/metrics/swd_spread.py", ["--data", "{missing}", "--train-data", "{missing}"]),
])
def test_studies_reject_a_missing_data_folder_in_one_line(script, arguments, tmp_path, capsys):
    assert_rejects_a_missing_data_folder(script, arguments, tmp_path, capsys)


def test_the_second_stage_study_keeps_earlier_rows_only_from_the_same_precision(tmp_path):
    merged = _script("research/second_stage/second_stage_study.py")._merged
    path = tmp_path / "second_stage_study.json"
    new_row = {"name": "all codes"}
    earlier_row = {"name": "all codes + q(u) matched"}

    def write(**header):
        path.write_text(json.dumps({"first_stage_sha256": "abc", **header,
                                    "rows": [earlier_row]}))

    write(precision="mixed_bfloat16")
    assert merged(path, "abc", "mixed_bfloat16", "mixed_bfloat16", [new_row]) == \
        [new_row, earlier_row]
    assert merged(path, "abc", "float32", "mixed_bfloat16", [new_row]) == [new_row]
    assert merged(path, "other", "mixed_bfloat16", "mixed_bfloat16", [new_row]) == [new_row]
    # A file from before the precision was recorded was measured as saved.
    write()
    assert merged(path, "abc", "mixed_bfloat16", "mixed_bfloat16", [new_row]) == \
        [new_row, earlier_row]
    assert merged(path, "abc", "float32", "mixed_bfloat16", [new_row]) == [new_row]


def test_the_second_stage_study_names_an_unknown_variant(tmp_path, capsys):
    main = _script("research/second_stage/second_stage_study.py").main
    argv = ["--model", str(tmp_path / "m.keras"), "--data", str(tmp_path),
            "--val-data", str(tmp_path), "--variants", "all codes,wider"]
    assert run_command("second_stage_study.py", lambda: main(argv)) == 1
    assert capsys.readouterr().err.startswith(
        "second_stage_study.py: error: unknown variant(s) wider; choose from ")


def test_experiments_reuse_only_runs_finished_with_the_asked_for_epochs(tmp_path):
    finished = _script("research/lectures/experiments.py")._finished
    run = tmp_path / "vae-10"
    run.mkdir()
    (run / "model.keras").write_bytes(b"")
    assert not finished(run, 8)  # No run.json.
    (run / "run.json").write_text('{"options": {"epochs": 8}}', encoding="utf-8")
    assert finished(run, 8) and not finished(run, 16)
    (run / "backup").mkdir()  # Interrupted: resume rather than reuse.
    assert not finished(run, 8)


def test_experiments_default_only_rescores_the_last_row_and_keeps_the_runs(tmp_path, capsys):
    import json

    import numpy as np
    from PIL import Image

    from cvae.figures import image_grid, save_image
    from cvae.model.saving import save_model
    from cvae.model.vae import VAE
    from tests.helpers import TINY, smooth_images

    script = _script("research/lectures/experiments.py")
    val = tmp_path / "val"
    val.mkdir()
    for index, image in enumerate(smooth_images(8, size=128)):
        Image.fromarray(image).save(val / f"{index}.png")
    model = tmp_path / "default.keras"
    save_model(VAE(TINY.replace(image_size=128), seed=0), model)
    out, readme = tmp_path / "out", tmp_path / "exploration.md"
    readme.write_text("<!-- experiments:begin -->\nold\n<!-- experiments:end -->\n")
    argv = ["--data", str(val), "--val-data", str(val), "--out", str(out),
            "--default-model", str(model), "--readme", str(readme), "--default-only"]
    assert run_command("experiments.py", lambda: script.main(argv)) == 1
    assert "--default-only needs a full run's experiments.json" in capsys.readouterr().err

    out.mkdir()
    rows = [np.full((script.SHOWN, 64, 64, 3), 40 * (r + 1), np.uint8)
            for r in range(len(script.EXPERIMENTS))]
    save_image(image_grid(rows), out / "samples.png")
    entry = {"description": "a run", "psnr": 20.0, "swd": 300.0, "kl": 10.0, "active_units": 3,
             "largest_mean_offset": 0.5, "training_s": 60.0}
    recorded = {"images": 8, "epochs": 8, "real_vs_real_swd": 20.0,
                **{name: entry for name in script.EXPERIMENTS}}
    (out / "experiments.json").write_text(json.dumps(recorded))
    assert run_command("experiments.py", lambda: script.main(argv)) == 0
    results = json.loads((out / "experiments.json").read_text())
    assert results["vae-10"] == entry and "`default.keras`, latent 4" in results["default"][
        "description"]
    grid = np.asarray(Image.open(out / "samples.png"))
    assert grid.shape == (5 * 66 - 2, script.SHOWN * 66 - 2, 3)
    np.testing.assert_array_equal(grid[:4 * 66 - 2], image_grid(rows))
    assert f"{results['default']['swd']:.1f} at this size" in readme.read_text()


def test_the_swd_spread_repeats_each_measurement_and_writes_its_table(tmp_path):
    from cvae.model.saving import save_model
    from cvae.model.vae import VAE
    from tests.helpers import TINY, write_image_folder

    held_out = write_image_folder(tmp_path / "val", n=24, size=(16, 16), seed=1)
    training = write_image_folder(tmp_path / "train", n=30, size=(16, 16), seed=2)
    other_source = write_image_folder(tmp_path / "other", n=20, size=(16, 16), seed=3)
    model = tmp_path / "tiny.keras"
    save_model(VAE(TINY, seed=0, dtype="mixed_bfloat16"), model)
    doc = tmp_path / "doc.md"
    doc.write_text("before\n<!-- swd-spread:begin -->\nold\n<!-- swd-spread:end -->\nafter\n")
    main = _script("research/metrics/swd_spread.py").main
    assert main(["--data", str(held_out), "--train-data", str(training), "--model", str(model),
                 "--precision", "float32", "--repeats", "2", "--out", str(tmp_path),
                 "--doc", str(doc), "--mixture-data", str(other_source)]) == 0
    result = json.loads((tmp_path / "swd_spread.json").read_text())
    assert result["repeats"] == 2 and result["images"] == 24
    # The model ran in the precision asked for, and the table says so.
    assert result["precision"] == "float32"
    assert "computing in float32" in doc.read_text()
    assert "training_mixture" in result["levels"]
    # The mixture's faces are not the first source's alone.
    assert result["levels"]["training_mixture"] != result["levels"]["training_faces"]
    for name, repeats in result["levels"].items():
        assert len(repeats) == 2, name
        assert all(value >= 0 for levels in repeats for value in levels)
    # Each repeat is its own measurement (another split, other samples).
    assert result["levels"]["real_vs_real"][0] != result["levels"]["real_vs_real"][1]
    text = doc.read_text()
    assert "old" not in text and text.startswith("before") and text.endswith("after\n")
    assert "| real-vs-real (the other half) |" in text and "--repeats 2" in text
    assert "| real training faces, every source |" in text


def test_epoch_states_scores_each_kept_state_on_the_runs_held_out_share(tmp_path, capsys):
    from cvae.evaluation.evaluate import reconstruction_entry
    from cvae.model.saving import save_model
    from cvae.model.vae import VAE
    from tests.helpers import TINY, tiny_model_file, write_image_folder

    faces = write_image_folder(tmp_path / "faces", n=40, size=(16, 16))
    run = tmp_path / "run"
    (run / "epochs").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"config": TINY.to_dict(),
                                              "options": {"validation_fraction": 0.5}}))
    for epoch in (1, 2):
        save_model(VAE(TINY, seed=epoch), run / "epochs" / f"epoch_{epoch:03d}.keras")
    starting = tiny_model_file(tmp_path)
    main = _script("research/model/epoch_states.py").main
    assert main([str(run), "--data", str(faces), "--also", str(starting)]) == 0
    result = json.loads((run / "epoch_states.json").read_text())
    assert [Path(row["model"]).name for row in result["rows"]] == [
        "tiny.keras", "epoch_001.keras", "epoch_002.keras"]
    # The held-out share is the one `cvae train --validation-split 0.5` keeps out.
    from cvae.data import datasets
    _, held_out = datasets.read_dataset(faces, 16, validation_fraction=0.5)
    assert result["images"] == len(held_out) >= 4
    from cvae.model.saving import load_model
    model = load_model(run / "epochs" / "epoch_002.keras")
    expected = reconstruction_entry(held_out / 255.0, model.reconstruct(held_out))
    assert result["rows"][2]["reconstruction"] == pytest.approx(expected["reconstruction"])
    # pytest.approx compares flat mappings only (9.2 refuses nested ones).
    swd, expected_swd = result["rows"][2]["reconstruction_swd"], expected["reconstruction_swd"]
    assert swd.keys() == expected_swd.keys()
    for key, value in expected_swd.items():
        assert swd[key] == pytest.approx(value)
    assert "| `" + str(run / "epochs" / "epoch_002.keras") + "` |" in capsys.readouterr().out

    # With --refine-steps each state has a second row, from its refined codes.
    assert main([str(run), "--data", str(faces), "--refine-steps", "3"]) == 0
    rows = json.loads((run / "epoch_states.json").read_text())["rows"]
    assert [(Path(row["model"]).name, row.get("refine_steps")) for row in rows] == [
        ("epoch_001.keras", None), ("epoch_001.keras", 3),
        ("epoch_002.keras", None), ("epoch_002.keras", 3)]
    refined = reconstruction_entry(held_out / 255.0, model.reconstruct(held_out, refine_steps=3))
    assert rows[3]["reconstruction"] == pytest.approx(refined["reconstruction"])
    assert "epoch_002.keras`, codes refined 3 steps |" in capsys.readouterr().out

    assert run_command("epoch_states.py", lambda: main([str(tmp_path), "--data", str(faces)])) == 1
    assert "is not a training run directory" in capsys.readouterr().err


def test_refinement_study_scores_each_texture_weight_on_the_held_out_share(tmp_path, capsys):
    from cvae.data import datasets
    from cvae.evaluation.evaluate import reconstruction_entry
    from cvae.model.saving import load_model
    from tests.helpers import tiny_model_file, write_image_folder

    faces = write_image_folder(tmp_path / "faces", n=40, size=(16, 16))
    model_file = tiny_model_file(tmp_path)
    doc = tmp_path / "study.md"
    doc.write_text("before\n<!-- refinement-texture:begin -->\nPLACEHOLDER\n"
                   "<!-- refinement-texture:end -->\nafter\n")
    main = _script("research/refinement/refinement_study.py").main
    arguments = ["--data", str(faces), "--validation-split", "0.5", "--model", str(model_file),
                 "--steps", "3", "--texture-weights", "0,0.5", "--out",
                 str(tmp_path / "study.json"), "--doc", str(doc)]
    assert main(arguments) == 0
    result = json.loads((tmp_path / "study.json").read_text())
    assert [row["texture_weight"] for row in result["rows"]] == [None, 0.0, 0.5]
    _, held_out = datasets.read_dataset(faces, 16, validation_fraction=0.5)
    model = load_model(model_file)
    expected = reconstruction_entry(held_out / 255.0, model.reconstruct(
        held_out, refine_steps=3, texture_weight=0.5))
    assert result["images"] == len(held_out)
    assert result["rows"][2]["reconstruction"] == pytest.approx(expected["reconstruction"])
    text = doc.read_text()
    assert "PLACEHOLDER" not in text and "| refined, texture weight 0.5 |" in text
    assert "--texture-weights 0,0.5" in text

    with pytest.raises(SystemExit):
        main(["--data", str(faces), "--texture-weights", "0,-1"])
    assert "weights must be >= 0" in capsys.readouterr().err


def test_matching_the_codes_covariance_gives_samples_the_training_codes_correlations(
        first_stage):
    from cvae.model.second_stage import train_second_stage, with_second_stage
    from cvae.sampling.samplers import sample_latents

    matched_to_code_covariance = _script(
        "research/second_stage/second_stage_study.py").matched_to_code_covariance

    model, _ = first_stage
    latent_dim = model.config.latent_dim
    rng = np.random.default_rng(4)
    # Correlated codes: each dimension mixes all of a few independent factors
    # (one of them most), so none of their directions is nearly flat.
    mixing = np.eye(latent_dim) + 0.5 * rng.normal(size=(latent_dim, latent_dim))
    z_mean = rng.normal(size=(512, latent_dim)) @ mixing + 1.0
    z_log_var = np.full_like(z_mean, np.log(0.04))
    trained = train_second_stage(z_mean, z_log_var, units=(16,), epochs=2, batch_size=64)
    covariance = trained.code_covariance  # Of q(z): the means' plus the posterior's.
    np.testing.assert_allclose(covariance,
                               np.cov(z_mean, rowvar=False, bias=True) + 0.04 * np.eye(latent_dim))

    def drawn_covariance(whole_covariance):
        combined = with_second_stage(model, trained)
        if whole_covariance:
            combined.second_stage_decoder.set_weights(matched_to_code_covariance(
                trained.units, trained.decoder_weights(), trained.code_mean,
                trained.code_covariance, combined.config.second_stage_noise))
        drawn = sample_latents(combined, 20000, seed=3)
        return drawn.mean(axis=0), np.cov(drawn, rowvar=False)

    # Its own noise included, the default sampler's codes then have the
    # training codes' mean and covariance, correlations and all ...
    mean, matched = drawn_covariance(whole_covariance=True)
    scale = np.sqrt(np.outer(np.diag(covariance), np.diag(covariance)))
    assert np.all(np.abs(mean - trained.code_moments[0]) < 0.05 * np.sqrt(np.diag(covariance)))
    assert np.abs((matched - covariance) / scale).max() < 0.05
    # ... which matching each dimension's variance alone does not give.
    _, per_dimension = drawn_covariance(whole_covariance=False)
    np.testing.assert_allclose(np.diag(per_dimension), np.diag(covariance), rtol=0.05)
    assert np.abs((per_dimension - covariance) / scale).max() > 0.1
