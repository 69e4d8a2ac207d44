"""--align on the commands that read photos, the placement cache, and
`cvae decompress --paste-into`."""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cvae.cli import main
from cvae.data import datasets, image_files
from tests.helpers import tiny_model_file

ASTRONAUT = Path(__file__).resolve().parent.parent / "data" / "astronaut.png"


@pytest.fixture
def model_path(tmp_path):
    return tiny_model_file(tmp_path)


@pytest.fixture
def photos(tmp_path, monkeypatch):
    monkeypatch.setenv("CVAE_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "photos"
    folder.mkdir()
    # The astronaut off centre in a larger canvas, and a photo with no face.
    canvas = Image.new("RGB", (900, 700), (90, 120, 150))
    canvas.paste(Image.open(ASTRONAUT).convert("RGB"), (330, 150))
    canvas.save(folder / "portrait.jpg", quality=95)
    rng = np.random.default_rng(0)
    blocks = np.kron(rng.integers(0, 256, (10, 15, 3)), np.ones((20, 20, 1))).astype(np.uint8)
    Image.fromarray(blocks).save(folder / "landscape.png")
    return folder


def test_auto_aligns_faces_and_warns_once_per_file_without_one(tmp_path, model_path, photos,
                                                               capsys):
    out = tmp_path / "out"
    assert main(["compress", str(photos / "portrait.jpg"), str(photos / "landscape.png"),
                 "-o", str(out), "--model", str(model_path), "--json"]) == 0
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines() == [
        f"cvae: warning: {photos / 'landscape.png'}: no face found; using the centred square"]
    report = {Path(entry["input"]).name: entry for entry in json.loads(captured.out)}
    portrait = report["portrait.jpg"]["crop"]
    assert portrait["aligned"] is True
    left, top, width, height = portrait["box"]
    # The astronaut's face is near (330 + 224, 150 + 115) in the canvas.
    assert abs(left + width / 2 - 554) < 15 and abs(top + height / 2 - 265) < 25
    assert report["landscape.png"]["crop"] == {"aligned": False, "box": [50.0, 0.0, 200.0, 200.0],
                                               "angle": 0.0}


def test_on_fails_only_the_file_without_a_face(tmp_path, model_path, photos, capsys):
    out = tmp_path / "out"
    assert main(["compress", str(photos), "-o", str(out), "--model", str(model_path),
                 "--align", "on"]) == 1
    errors = capsys.readouterr().err.strip().splitlines()
    assert errors[0] == f"cvae: error: {photos / 'landscape.png'}: no face found (--align on)"
    assert errors[-1] == "cvae: error: 1 input(s) failed, 1 done"
    assert [p.name for p in out.iterdir()] == ["portrait.cvae"]


def test_off_and_crop_box_take_no_face_detection(tmp_path, model_path, photos, capsys):
    for options in (["--align", "off"], ["--crop-box", "0,0,100,100", "--align", "on"]):
        out = tmp_path / "out" / options[1].replace(",", "_")
        assert main(["compress", str(photos / "landscape.png"), "-o", str(out),
                     "--model", str(model_path), "--json", *options]) == 0
        assert json.loads(capsys.readouterr().out)[0]["crop"]["aligned"] is False


def test_paste_into_writes_the_whole_photo(tmp_path, model_path, photos, capsys):
    packed = tmp_path / "packed"
    assert main(["compress", str(photos / "portrait.jpg"), "-o", str(packed),
                 "--model", str(model_path)]) == 0
    assert main(["decompress", str(packed / "portrait.cvae"), "-o", str(tmp_path / "back"),
                 "--model", str(model_path), "--paste-into", str(photos / "portrait.jpg")]) == 0
    with Image.open(tmp_path / "back" / "portrait.png") as pasted:
        assert pasted.size == (900, 700)
    assert main(["decompress", str(packed), str(packed), "-o", str(tmp_path / "again"),
                 "--model", str(model_path), "--paste-into", str(photos / "portrait.jpg")]) == 1
    assert "exactly one .cvae file" in capsys.readouterr().err


def test_folders_are_searched_once_then_read_from_the_cache(photos, monkeypatch):
    framing = image_files.Framing(align="auto")
    paths = sorted(photos.iterdir())
    with pytest.warns(image_files.NoFaceWarning, match="no face found in 1 file"):
        first, skipped = image_files.load_images(paths, 32, framing=framing)
    assert len(first) == 2 and not skipped

    def no_search(*args, **kwargs):
        raise AssertionError("searched again")

    monkeypatch.setattr("cvae.data.align.find_face", no_search)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", image_files.NoFaceWarning)
        again, _ = image_files.load_images(paths, 32, framing=framing)
    np.testing.assert_array_equal(first, again)


def test_align_on_skips_training_files_without_a_face(photos):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        images, _ = datasets.read_dataset(photos, 32, framing=image_files.Framing(align="on"))
    assert len(images) == 1
    assert any("no face found" in str(warning.message) for warning in caught)


def test_reconstruct_paste_back_writes_the_whole_photo_with_the_face_replaced(tmp_path,
                                                                              model_path, photos):
    out = tmp_path / "back"
    assert main(["reconstruct", str(photos / "portrait.jpg"), "-o", str(out),
                 "--model", str(model_path), "--paste-back"]) == 0
    with Image.open(photos / "portrait.jpg") as photo:
        original = np.asarray(photo.convert("RGB")).astype(int)
    pasted = np.asarray(Image.open(out / "portrait.png")).astype(int)
    assert pasted.shape == original.shape
    # The untrained model's face replaces the astronaut's; the far corner is the photo's.
    assert np.abs(pasted[240:290, 530:580] - original[240:290, 530:580]).mean() > 10
    np.testing.assert_array_equal(pasted[:20, :20], original[:20, :20])

    side = tmp_path / "side"
    assert main(["reconstruct", str(photos / "portrait.jpg"), "-o", str(side),
                 "--model", str(model_path), "--paste-back", "--side-by-side"]) == 0
    pair = np.asarray(Image.open(side / "portrait.png")).astype(int)
    assert pair.shape == (700, 1800, 3)
    np.testing.assert_array_equal(pair[:, :900], original)
    np.testing.assert_array_equal(pair[:, 900:], pasted)


def test_a_square_crop_at_the_models_size_is_taken_as_framed_without_a_warning(
        tmp_path, model_path, monkeypatch, capsys):
    monkeypatch.setenv("CVAE_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(1)
    for name, side in (("crop.png", 16), ("larger.png", 32)):  # The tiny model's size is 16.
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(tmp_path / name)
    assert main(["compress", str(tmp_path / "crop.png"), str(tmp_path / "larger.png"),
                 "-o", str(tmp_path / "out"), "--model", str(model_path), "--json"]) == 0
    captured = capsys.readouterr()
    # No face is found in either: only the photo that is not a crop at the
    # model's size is warned of, and the crop is kept whole, as it came.
    assert captured.err.strip().splitlines() == [
        f"cvae: warning: {tmp_path / 'larger.png'}: no face found; using the centred square"]
    report = {Path(entry["input"]).name: entry["crop"] for entry in json.loads(captured.out)}
    assert report["crop.png"] == {"aligned": True, "box": [0.0, 0.0, 16.0, 16.0], "angle": 0.0}
    original = np.asarray(Image.open(tmp_path / "crop.png"))
    framed, _ = image_files.load_face(tmp_path / "crop.png", 16, framing=image_files.Framing(
        align="auto"))
    np.testing.assert_array_equal(framed, original)


def test_a_crop_taken_as_framed_under_auto_is_still_refused_under_on(tmp_path, monkeypatch):
    monkeypatch.setenv("CVAE_CACHE", str(tmp_path / "cache"))
    crop = tmp_path / "crop.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (16, 16, 3), np.uint8)).save(crop)
    images, skipped = image_files.load_images([crop], 16, framing=image_files.Framing(align="auto"))
    assert len(images) == 1 and not skipped
    # The placement cache must not carry auto's leniency over to on.
    images, skipped = image_files.load_images([crop], 16, framing=image_files.Framing(align="on"),
                                              warn=False)
    assert len(images) == 0 and "no face found" in skipped[0][1]
