"""Generation and latent-space exploration: interpolation, traversal,
attribute vectors, latent statistics, and their commands."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from cvae.cli import main
from cvae.model.saving import save_model
from cvae.model.vae import VAE
from cvae.sampling import exploration
from tests.helpers import TINY, smooth_images


@pytest.fixture(scope="module")
def model():
    return VAE(TINY, seed=0)


@pytest.mark.parametrize("mode", ["lerp", "slerp"])
def test_interpolation_ends_at_the_endpoint_reconstructions(model, mode):
    first, last = smooth_images(2, seed=5)
    faces = exploration.interpolation(model, first, last, steps=5, mode=mode)
    assert faces.shape == (5, 16, 16, 3)
    np.testing.assert_allclose(faces[0], model.reconstruct(first)[0], atol=1e-5)
    np.testing.assert_allclose(faces[-1], model.reconstruct(last)[0], atol=1e-5)


def test_lerp_cuts_the_corner_and_slerp_keeps_the_radius():
    start, end = np.array([3.0, 0.0, 0.0]), np.array([0.0, 3.0, 0.0])
    straight = exploration.interpolate(start, end, 3, "lerp")
    curved = exploration.interpolate(start, end, 3, "slerp")
    np.testing.assert_allclose(straight[1], [1.5, 1.5, 0.0])
    np.testing.assert_allclose(np.linalg.norm(curved, axis=1), 3.0)
    np.testing.assert_allclose(curved[1], [3 / np.sqrt(2), 3 / np.sqrt(2), 0.0])
    # Parallel codes of different length: both are the straight line.
    np.testing.assert_allclose(exploration.interpolate(start, 2 * start, 3, "slerp"),
                               exploration.interpolate(start, 2 * start, 3, "lerp"))
    with pytest.raises(ValueError, match="steps"):
        exploration.interpolate(start, end, 1)


def test_traversal_changes_only_the_chosen_dimension():
    code = np.array([0.5, -1.0, 2.0, 0.0])
    grid = exploration.traverse(code, [2, 0], [-3.0, 0.0, 3.0])
    assert grid.shape == (2, 3, 4)
    for row, dimension in enumerate([2, 0]):
        np.testing.assert_array_equal(grid[row, :, dimension], [-3.0, 0.0, 3.0])
        others = [d for d in range(4) if d != dimension]
        np.testing.assert_array_equal(grid[row][:, others], np.tile(code[others], (3, 1)))
    with pytest.raises(ValueError, match="out of range"):
        exploration.traverse(code, [4], [0.0])


def test_the_most_informative_dimensions_come_first():
    z_mean = np.zeros((10, 4))
    z_log_var = np.log(np.array([[1.0, 0.01, 0.5, 0.1]] * 10))
    assert exploration.most_informative_dimensions(z_mean, z_log_var, 2) == [1, 3]


def test_attribute_vectors_recover_a_planted_direction():
    rng = np.random.default_rng(0)
    direction = np.array([0.0, 2.0, -1.0, 0.5])
    negative = rng.standard_normal((4000, 4))
    positive = rng.standard_normal((4000, 4)) + direction
    vector = exploration.attribute_vector(positive, negative)
    np.testing.assert_allclose(vector, direction, atol=0.08)
    code = np.ones(4)
    edits = exploration.edit(code, vector, [-1.0, 0.0, 2.0])
    np.testing.assert_allclose(edits[1], code)
    np.testing.assert_allclose(edits[2] - edits[0], 3 * vector)


def test_latent_statistics_count_what_is_used():
    rng = np.random.default_rng(3)
    z_mean = np.stack([rng.standard_normal(500), np.zeros(500)], axis=1)
    z_log_var = np.zeros((500, 2))
    stats = exploration.latent_statistics(z_mean, z_log_var)
    assert stats["active_units"] == 1
    assert stats["kl_per_dimension"][1] == 0.0
    assert abs(stats["kl_per_dimension"][0] - 0.5) < 0.1


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "tiny.keras"
    save_model(VAE(TINY, seed=0), path)
    return path


def _write_faces(folder, count, seed):
    folder.mkdir(parents=True, exist_ok=True)
    for index, face in enumerate(smooth_images(count, seed=seed)):
        Image.fromarray(face).save(folder / f"face{index}.png")
    return folder


def _size(path):
    with Image.open(path) as picture:
        return picture.size


def test_every_command_writes_its_picture(tmp_path, model_file):
    model = ["--model", str(model_file)]
    faces = _write_faces(tmp_path / "faces", 12, seed=0)
    others = _write_faces(tmp_path / "others", 12, seed=1)
    face = str(faces / "face0.png")
    out = tmp_path / "out"

    assert main(["generate", "-n", "10", "--columns", "5", "-o", str(out / "grid.png"),
                 "--separate", str(out / "each"), *model]) == 0
    assert _size(out / "grid.png") == (5 * 16 + 4 * 2, 2 * 16 + 2)
    assert len(list((out / "each").glob("sample_*.png"))) == 10

    assert main(["generate", "--sampler", "gmm", "--fit-data", str(faces), "--components", "2",
                 "-o", str(out / "gmm.png"), *model]) == 0
    assert model_file.with_suffix(".gmm.npz").is_file()
    assert main(["generate", "--sampler", "gmm", "-n", "4", "-o", str(out / "again.png"),
                 *model]) == 0  # Reuses the saved mixture.
    # Fitting again never replaces it silently; --mixture writes elsewhere.
    saved = model_file.with_suffix(".gmm.npz").read_bytes()
    assert main(["generate", "--sampler", "gmm", "--fit-data", str(faces), "--components", "2",
                 "-o", str(out / "gmm.png"), *model]) == 1
    assert model_file.with_suffix(".gmm.npz").read_bytes() == saved
    other = tmp_path / "other.gmm.npz"
    assert main(["generate", "--sampler", "gmm", "--fit-data", str(faces), "--components", "2",
                 "--mixture", str(other), "-o", str(out / "gmm2.png"), *model]) == 0
    assert other.is_file()
    # Too few images for the components is refused before any work.
    assert main(["generate", "--sampler", "gmm", "--fit-data", str(faces), "--components", "9",
                 "--mixture", str(tmp_path / "x.npz"), "-o", str(out / "gmm3.png"),
                 *model]) == 1
    assert not (tmp_path / "x.npz").exists()

    assert main(["interpolate", face, "seed:3", "--steps", "6", "-o", str(out / "strip.png"),
                 *model]) == 0
    assert _size(out / "strip.png") == (6 * 16 + 5 * 2, 16)
    assert main(["traverse", face, "--dims", "0,3", "--steps", "5", "-o", str(out / "t.png"),
                 *model]) == 0
    assert _size(out / "t.png") == (5 * 16 + 4 * 2, 2 * 16 + 2)
    assert main(["traverse", face, "-o", str(out / "t2.png"), *model]) == 0  # Default dims.

    vector = out / "older.npy"
    assert main(["attribute", "--positive", str(faces), "--negative", str(others),
                 "-o", str(vector), *model]) == 0
    assert np.load(vector).shape == (4,)
    assert main(["edit", face, "--vector", str(vector), "--scale=-1,0,1,2",
                 "-o", str(out / "edit.png"), *model]) == 0
    assert _size(out / "edit.png") == (4 * 16 + 3 * 2, 16)

    assert main(["latent-stats", "--data", str(faces), "-o", str(out / "stats"),
                 "--shown", "4", *model]) == 0
    stats = json.loads((out / "stats" / "stats.json").read_text())
    assert stats["images"] == 12 and len(stats["kl_per_dimension"]) == 4
    assert (out / "stats" / "histograms.png").is_file()
    assert (out / "stats" / "kl_per_dimension.png").is_file()


def test_generate_runs_float32_where_bfloat16_would_be_emulated(tmp_path, monkeypatch):
    from cvae import precision
    from cvae.model.saving import load_model

    path = tmp_path / "bfloat16.keras"
    save_model(VAE(TINY, seed=0, dtype="mixed_bfloat16"), path)
    monkeypatch.setattr(precision, "cpu_has_bfloat16", lambda: False)
    command = ["generate", "-n", "4", "--seed", "3", "--model", str(path), "--separate"]
    assert main([*command, str(tmp_path / "auto")]) == 0
    assert main([*command, str(tmp_path / "saved"), "--precision", "mixed_bfloat16"]) == 0
    in_float32 = load_model(path, precision="float32").generate(4, seed=3)
    auto, saved = ([np.asarray(Image.open(tmp_path / kind / f"sample_{index:03d}.png"))
                    for index in range(4)] for kind in ("auto", "saved"))
    expected = np.round(in_float32 * 255)
    assert max(np.abs(face.astype(int) - want).max() for face, want in zip(auto, expected)) <= 1
    assert any(not np.array_equal(a, b) for a, b in zip(auto, saved))


@pytest.mark.parametrize("arguments, message", [
    (["traverse", "missing.png", "-o", "x.png"], "no such image file"),
    (["traverse", "FACE", "--dims", "9", "-o", "x.png"], "out of range"),
    (["traverse", "FACE", "--steps", "1", "-o", "x.png"], "at least 2"),
    (["traverse", "FACE", "--range", "3", "-3", "-o", "x.png"], "LOW must be below HIGH"),
    (["interpolate", "seed:1", "seed:2", "--steps", "1", "-o", "x.png"], "at least 2"),
    (["interpolate", "seed:1", "seed:two", "-o", "x.png"], "seed:N"),
    (["interpolate", "NOTES", "seed:1", "-o", "x.png"], "not an image (or a format Pillow cannot read)"),
    (["generate", "-n", "2"], "-o GRID.png"),
    (["generate", "--sampler", "gmm", "-o", "x.png"], "no mixture at"),
    (["edit", "FACE", "--vector", "missing.npy", "-o", "x.png"], "cannot read the vector"),
    (["edit", "FACE", "--vector", "NOTES", "-o", "x.png"], "not a .npy file"),
    (["traverse", "EMPTY", "-o", "x.png"], "EMPTY: empty file"),
    (["interpolate", "EMPTY", "seed:1", "-o", "x.png"], "EMPTY: empty file"),
    (["generate", "-n", "2", "-o", "x.png", "--model", "FACE"], "not a .keras model file"),
    (["attribute", "--positive", "nowhere", "--negative", "nowhere", "-o", "v.npy"],
     "no such file or directory"),
])
def test_bad_arguments_are_one_clear_line(tmp_path, model_file, capsys, arguments, message):
    face = _write_faces(tmp_path / "faces", 1, seed=0) / "face0.png"
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "empty.png").write_bytes(b"")
    names = {"FACE": str(face), "NOTES": str(tmp_path / "notes.txt"),
             "EMPTY": str(tmp_path / "empty.png")}
    arguments = [names.get(a, a) for a in arguments]
    message = message.replace("EMPTY", names["EMPTY"])
    if "--model" not in arguments:
        arguments += ["--model", str(model_file)]
    assert main(arguments) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("cvae: error:") and message in error and "\n" not in error


def test_the_command_line_loads_no_tensorflow_to_show_help():
    code = ("import sys, cvae.cli; cvae.cli.build_parser(); "
            "print(any(m.startswith('tensorflow') for m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False"


def test_outputs_are_written_in_the_format_their_suffix_names(tmp_path, model_file, capsys):
    model = ["--model", str(model_file)]
    assert main(["generate", "-n", "2", "-o", str(tmp_path / "g.jpg"), *model]) == 0
    with Image.open(tmp_path / "g.jpg") as picture:
        assert picture.format == "JPEG"
    assert main(["generate", "-n", "2", "-o", str(tmp_path / "g.webp"), *model]) == 0
    with Image.open(tmp_path / "g.webp") as picture:
        assert picture.format == "WEBP"
    assert main(["generate", "-n", "2", "-o", str(tmp_path / "g.txt"), *model]) == 1
    assert capsys.readouterr().err.strip() == (f"cvae: error: cannot write {tmp_path / 'g.txt'}: "
                                               f"name a .png, .jpg or .webp file")
    assert not (tmp_path / "g.txt").exists()
