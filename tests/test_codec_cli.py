"""`cvae compress`, `cvae decompress` and `cvae calibrate` on a tiny model."""

import numpy as np
import pytest
from PIL import Image

from cvae.cli import main
from cvae.codec import CodecTable, table_path, weights_sha256
from cvae.model.saving import save_model
from cvae.model.vae import VAE
from tests.helpers import TINY, tiny_model_file, write_image_folder


@pytest.fixture
def model_path(tmp_path):
    return tiny_model_file(tmp_path)


def _errors(capsys):
    lines = capsys.readouterr().err.strip().splitlines()
    assert all(line.startswith("cvae: ") for line in lines), lines  # No traceback.
    return lines


def test_a_mixed_folder_round_trips_what_it_can(tmp_path, model_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    for index, array in enumerate(np.random.default_rng(0).integers(0, 255, (3, 30, 20, 3))):
        Image.fromarray(array.astype(np.uint8)).save(folder / f"face{index}.png")
    (folder / "notes.txt").write_text("not an image")
    (folder / "empty.jpg").write_bytes(b"")
    packed, unpacked = tmp_path / "packed", tmp_path / "unpacked"

    assert main(["compress", str(folder), "-o", str(packed), "--model", str(model_path)]) == 1
    errors = _errors(capsys)
    # Files of other kinds in a folder are left out, counted in one warning;
    # a file named like an image that is not one fails on its own.
    assert any(line.startswith("cvae: warning: skipped 1 file(s)") and "notes.txt" in line
               for line in errors)
    assert any("empty.jpg: empty file" in line for line in errors)
    assert sorted(p.name for p in packed.iterdir()) == ["face0.cvae", "face1.cvae", "face2.cvae"]
    assert all(p.stat().st_size <= 128 for p in packed.iterdir())

    assert main(["decompress", str(packed), "-o", str(unpacked), "--model", str(model_path)]) == 0
    for index in range(3):
        with Image.open(unpacked / f"face{index}.png") as picture:
            assert picture.size == (16, 16)

    # Existing outputs are kept unless --force.
    before = (packed / "face0.cvae").stat().st_mtime_ns
    assert main(["compress", str(folder / "face0.png"), "-o", str(packed),
                 "--model", str(model_path)]) == 1
    assert "exists (use --force to overwrite)" in _errors(capsys)[0]
    assert (packed / "face0.cvae").stat().st_mtime_ns == before
    assert main(["compress", str(folder / "face0.png"), "-o", str(packed), "--force",
                 "--mode", "int8", "--model", str(model_path)]) == 0
    assert (packed / "face0.cvae").stat().st_size == 10 + 4 + 4 + 4  # int8: a byte per dim.


def test_bad_compressed_files_are_named_and_the_rest_decode(tmp_path, model_path, capsys):
    folder = write_image_folder(tmp_path / "in", n=2)
    packed = tmp_path / "packed"
    sources = sorted(folder.rglob("*.*"))
    assert main(["compress", *map(str, sources), "-o", str(packed),
                 "--model", str(model_path)]) == 0
    good = sorted(packed.iterdir())
    data = good[0].read_bytes()
    other_model, other = tmp_path / "other.keras", VAE(TINY, seed=1)
    save_model(other, other_model)
    CodecTable((0.05, 0.1, 0.05, 0.2), (True, True, False, True), 1.0,
               weights_sha256(other)).save(table_path(other_model))
    bad = {
        "empty.cvae": b"",
        "truncated.cvae": data[:10],
        "flipped.cvae": data[:16] + bytes([data[16] ^ 0xFF]) + data[17:],
        "magic.cvae": b"JFIF" + data[4:],
    }
    for name, content in bad.items():
        (packed / name).write_bytes(content)
    capsys.readouterr()
    out = tmp_path / "out"
    assert main(["decompress", str(packed), str(tmp_path / "missing.cvae"), "-o", str(out),
                 "--model", str(model_path)]) == 1
    errors = "\n".join(_errors(capsys))
    for name, message in [("empty.cvae", "empty file"), ("truncated.cvae", "truncated"),
                          ("flipped.cvae", "CRC-32"), ("magic.cvae", "wrong magic"),
                          ("missing.cvae", "no such file")]:
        assert f"{name}: " in errors and message in errors, name
    assert sorted(p.stem for p in out.iterdir()) == sorted(p.stem for p in good)

    assert main(["decompress", str(good[0]), "-o", str(tmp_path / "other"),
                 "--model", str(other_model)]) == 1
    assert "made by another model" in _errors(capsys)[0]


def test_entropy_without_a_table_says_what_to_do(tmp_path, capsys):
    path = tmp_path / "bare.keras"
    save_model(VAE(TINY, seed=0), path)
    folder = write_image_folder(tmp_path / "in", n=1)
    assert main(["compress", str(folder), "-o", str(tmp_path / "o"), "--model", str(path)]) == 1
    assert "cvae calibrate" in _errors(capsys)[0]
    with pytest.raises(SystemExit) as exit_info:
        main(["compress", str(folder), "--model", str(path), "--mode", "int8"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        "cvae compress: error: one of the arguments -o/--out --report is required "
        "(see cvae compress --help)"]


def test_calibrate_then_report(tmp_path, capsys):
    path = tmp_path / "bare.keras"
    save_model(VAE(TINY, seed=0), path)
    folder = write_image_folder(tmp_path / "in", n=12)
    assert main(["calibrate", "--data", str(folder), "--model", str(path),
                 "--steps", "0.5,2,16"]) == 0
    assert table_path(path).is_file()
    sizes = {}
    for quality in ("high", "low"):
        out = tmp_path / quality
        assert main(["compress", str(folder), "-o", str(out), "--model", str(path), "--align",
                     "off", "--quality", quality]) == 0
        sizes[quality] = sum(f.stat().st_size for f in out.iterdir())
    assert sizes["low"] <= sizes["high"]
    capsys.readouterr()
    budget = tmp_path / "budget"
    assert main(["compress", str(folder), "-o", str(budget), "--model", str(path), "--align",
                 "off", "--max-bytes", "19"]) == 0
    assert len(list(budget.iterdir())) == len(list((tmp_path / "high").iterdir()))
    assert all(f.stat().st_size <= 19 for f in budget.iterdir())
    assert main(["compress", str(folder / "face_001.png"), "-o", str(tmp_path / "none"),
                 "--model", str(path), "--align", "off", "--max-bytes", "12"]) == 1
    assert "cannot fit in 12 bytes" in _errors(capsys)[0]
    figure = tmp_path / "figure.png"
    assert main(["compress", str(folder), "--report", "--model", str(path),
                 "--figure", str(figure)]) == 0
    report = capsys.readouterr().out
    for method in ("cvae entropy", "cvae int8", "cvae float16", "JPEG q1", "WebP q0",
                   "size-matched", "unquantized"):
        assert method in report
    assert figure.is_file()
    assert main(["calibrate", "--data", str(tmp_path / "nothing"), "--model", str(path),
                 "--force"]) == 1
    assert "no such file or directory" in _errors(capsys)[0]


def test_calibrate_never_replaces_a_table_unasked_nor_writes_into_the_installed_packages(
        tmp_path, capsys, monkeypatch):
    import sysconfig

    path = tmp_path / "model.keras"
    save_model(VAE(TINY, seed=0), path)
    folder = write_image_folder(tmp_path / "in", n=4)
    table_path(path).write_text("a table files were compressed with")
    assert main(["calibrate", "--data", str(folder), "--model", str(path)]) == 1
    errors = _errors(capsys)
    assert len(errors) == 1 and "exists" in errors[0] and "--force" in errors[0]
    assert table_path(path).read_text() == "a table files were compressed with"
    # No --model: argparse's one-line refusal, not the shipped model's table.
    with pytest.raises(SystemExit) as exit_info:
        main(["calibrate", "--data", str(folder)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        "cvae calibrate: error: the following arguments are required: --model "
        "(see cvae calibrate --help)"]
    # A model among the installed packages is refused, even with --force.
    paths = {**sysconfig.get_paths(), "purelib": str(tmp_path), "platlib": str(tmp_path)}
    monkeypatch.setattr(sysconfig, "get_paths", lambda *args, **kwargs: paths)
    assert main(["calibrate", "--data", str(folder), "--model", str(path), "--force"]) == 1
    assert "inside the installed packages" in _errors(capsys)[0]
    assert table_path(path).read_text() == "a table files were compressed with"


def test_a_huge_image_fails_alone_with_the_limit(tmp_path, model_path, capsys):
    from PIL import Image as PILImage

    folder = tmp_path / "in"
    folder.mkdir()
    PILImage.new("RGB", (30, 20), (120, 80, 60)).save(folder / "good1.png")
    # 20000 x 20000 pixels in a few hundred bytes: a "decompression bomb".
    PILImage.new("1", (20000, 20000)).save(folder / "bomb.png")
    PILImage.new("RGB", (30, 20), (60, 80, 120)).save(folder / "good2.png")
    (folder / "fake.jpg").write_text("not an image")
    out = tmp_path / "out"
    assert main(["compress", str(folder), "-o", str(out), "--model", str(model_path),
                 "--align", "off"]) == 1
    errors = _errors(capsys)
    assert f"cvae: error: {folder / 'bomb.png'}: too many pixels: 400 megapixels, " \
           f"the limit is 50" in errors
    assert f"cvae: error: {folder / 'fake.jpg'}: not an image (or a format Pillow cannot read)" \
        in errors
    assert sorted(p.name for p in out.iterdir()) == ["good1.cvae", "good2.cvae"]


def test_a_large_image_under_pillows_limit_gets_its_size(tmp_path):
    from cvae.data import image_files

    Image.new("1", (9000, 6000)).save(tmp_path / "large.png")
    with pytest.raises(image_files.ImageTooLargeError, match=r"54 megapixels \(9000x6000\), the limit"):
        image_files.load_image(tmp_path / "large.png", 16)


def test_decompress_reads_only_cvae_files_from_a_folder(tmp_path, model_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    assert main(["compress", str(write_one(folder)), "-o", str(folder), "--model",
                 str(model_path), "--align", "off"]) == 0
    (folder / "README.txt").write_text("notes")
    assert main(["decompress", str(folder), "-o", str(tmp_path / "out"),
                 "--model", str(model_path)]) == 0
    assert "skipped 2 file(s)" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["face.png"]


def write_one(folder):
    path = folder / "face.png"
    Image.fromarray(np.full((20, 30, 3), 100, np.uint8)).save(path)
    return path


def test_the_litert_runtime_reads_and_writes_the_same_files_as_keras(tmp_path, capsys):
    path = tmp_path / "model.keras"
    save_model(VAE(TINY, seed=0), path)
    folder = write_image_folder(tmp_path / "in", n=4)
    assert main(["calibrate", "--data", str(folder), "--model", str(path)]) == 0
    assert main(["compress", str(folder), "-o", str(tmp_path / "x"), "--model", str(path),
                 "--runtime", "litert"]) == 1
    assert "no LiteRT files" in _errors(capsys)[0]
    assert main(["export-litert", "--model", str(path)]) == 0
    packed = {}
    for runtime in ("litert", "keras"):
        packed[runtime] = tmp_path / f"packed-{runtime}"
        assert main(["compress", str(folder), "-o", str(packed[runtime]), "--model", str(path),
                     "--align", "off", "--runtime", runtime]) == 0
    decoded = {}
    for made_by in ("litert", "keras"):  # Each runtime decodes the other's files.
        for runtime in ("litert", "keras"):
            out = tmp_path / f"{made_by}-by-{runtime}"
            assert main(["decompress", str(packed[made_by]), "-o", str(out), "--model",
                         str(path), "--runtime", runtime]) == 0
            decoded[made_by, runtime] = np.stack([np.asarray(Image.open(f), np.int16)
                                                  for f in sorted(out.iterdir())])
    for made_by in ("litert", "keras"):
        difference = np.abs(decoded[made_by, "litert"] - decoded[made_by, "keras"])
        assert difference.max() <= 1
    # Refining codes takes gradients, so the Keras runtime; either runtime decodes the files.
    assert main(["compress", str(folder), "-o", str(tmp_path / "r"), "--model", str(path),
                 "--refine-steps", "3", "--runtime", "litert"]) == 1
    assert "--refine-steps needs the Keras runtime" in _errors(capsys)[0]
    assert main(["compress", str(folder), "-o", str(tmp_path / "r"), "--model", str(path),
                 "--align", "off", "--refine-steps", "3"]) == 0
    assert main(["decompress", str(tmp_path / "r"), "-o", str(tmp_path / "r-out"), "--model",
                 str(path), "--runtime", "litert"]) == 0
    assert len(list((tmp_path / "r-out").iterdir())) == len(list(packed["keras"].iterdir()))
    # Neither direction imports TensorFlow or Keras on the LiteRT runtime.
    import subprocess
    import sys

    probe = ("import sys; from cvae.cli import main; "
             f"code = main(['compress', {str(folder)!r}, '-o', {str(tmp_path / 'z')!r}, "
             f"'--model', {str(path)!r}, '--align', 'off']) or "
             f"main(['decompress', {str(tmp_path / 'z')!r}, '-o', {str(tmp_path / 'zz')!r}, "
             f"'--model', {str(path)!r}]); "
             "print(code, 'tensorflow' in sys.modules, 'keras' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.stdout.split()[-3:] == ["0", "False", "False"], result.stderr[-500:]
    assert result.stderr == ""  # No start-up chatter either.
    # The LiteRT files are used only while they match the model file.
    save_model(VAE(TINY, seed=3), path)
    assert main(["compress", str(folder), "-o", str(tmp_path / "y"), "--model", str(path),
                 "--runtime", "litert"]) == 1
    assert "made from another version" in _errors(capsys)[0]


def test_reconstruct_writes_what_the_model_decodes_and_names_bad_files(tmp_path, first_stage,
                                                                       capsys):
    from cvae.codec import codec_for

    model, images = first_stage
    path = tmp_path / "trained.keras"
    save_model(model, path)
    folder = tmp_path / "in"
    folder.mkdir()
    for index in range(3):
        Image.fromarray(images[index]).save(folder / f"face{index}.png")
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "out"
    command = ["reconstruct", str(folder), "-o", str(out), "--model", str(path),
               "--align", "off"]
    assert main(command) == 1
    assert any("broken.jpg" in line for line in _errors(capsys))
    written = np.stack([np.asarray(Image.open(out / f"face{index}.png")) for index in range(3)])
    codec = codec_for(model)
    expected = codec.decode(codec.encode(images[:3]))
    assert np.abs(written.astype(int) - expected).max() <= 1
    assert main(command) == 1  # No silent overwrite.
    assert any("exists (use --force to overwrite)" in line for line in _errors(capsys))

    # Refined codes reconstruct the inputs more closely; --side-by-side puts
    # the framed input on the left.
    refined = tmp_path / "refined"
    assert main(["reconstruct", str(folder / "face0.png"), str(folder / "face1.png"),
                 "-o", str(refined), "--model", str(path), "--align", "off",
                 "--refine-steps", "20", "--side-by-side"]) == 0
    pairs = np.stack([np.asarray(Image.open(refined / f"face{index}.png")) for index in range(2)])
    assert pairs.shape == (2, 16, 32, 3)
    np.testing.assert_array_equal(pairs[:, :, :16], images[:2])

    def error(outputs):
        return np.mean((outputs.astype(float) - images[:2]) ** 2)

    assert error(pairs[:, :, 16:]) < error(written[:2])


def test_the_ladder_from_the_command_line(tmp_path, capsys):
    path = tmp_path / "model.keras"
    save_model(VAE(TINY, seed=0), path)
    folder = write_image_folder(tmp_path / "in", n=6)
    assert main(["calibrate", "--data", str(folder), "--model", str(path),
                 "--steps", "0.5,2,16"]) == 0
    capsys.readouterr()
    assert main(["compress", str(folder), "-o", str(tmp_path / "rich"), "--model", str(path),
                 "--align", "off", "--max-bytes", "400"]) == 0
    assert "the rate ladder up to 400 bytes" in capsys.readouterr().out
    assert all(f.stat().st_size <= 400 for f in (tmp_path / "rich").iterdir())
    assert main(["decompress", str(tmp_path / "rich"), "-o", str(tmp_path / "back"),
                 "--model", str(path)]) == 0
    assert len(list((tmp_path / "back").iterdir())) == len(list((tmp_path / "rich").iterdir()))
    from cvae.codec.detail import RUNGS

    assert main(["compress", str(folder), "-o", str(tmp_path / "x"), "--model", str(path),
                 "--mode", "detail", "--rung", str(len(RUNGS))]) == 1
    assert _errors(capsys) == [f"cvae: error: --rung {len(RUNGS)}: there are {len(RUNGS)} "
                               f"rungs, 0 to {len(RUNGS) - 1}"]
    assert not (tmp_path / "x").exists()
