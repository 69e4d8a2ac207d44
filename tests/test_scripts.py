"""Every command, the scripts in scripts/ and benchmarks/ included, ends bad
input with one line on stderr and a non-zero exit code."""

import importlib.util
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from cvae.errors import CvaeError, run_command

REPOSITORY = Path(__file__).resolve().parent.parent


def _raising(error):
    def run():
        raise error
    return run


@pytest.mark.parametrize("error, code, expected", [
    (CvaeError("no such file or directory: x"), 1, "prog: error: no such file or directory: x"),
    (ValueError("first line\nsecond line"), 1, "prog: error: first line"),
    (OSError("disk full"), 1, "prog: error: disk full"),
    (KeyboardInterrupt(), 130, "prog: interrupted"),
    (ZeroDivisionError("division by zero"), 1,
     "prog: internal error: ZeroDivisionError: division by zero (set CVAE_DEBUG=1 for the traceback)"),
])
def test_run_command_turns_errors_into_one_line(error, code, expected, capsys, monkeypatch):
    monkeypatch.delenv("CVAE_DEBUG", raising=False)
    assert run_command("prog", _raising(error)) == code
    assert capsys.readouterr().err == expected + "\n"


def test_run_command_passes_on_the_exit_code_and_debug_raises(monkeypatch):
    assert run_command("prog", lambda: None) == 0
    assert run_command("prog", lambda: 3) == 3
    monkeypatch.setenv("CVAE_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        run_command("prog", _raising(ZeroDivisionError()))


def test_run_command_prints_warnings_as_one_line_with_the_program_name(capsys, monkeypatch):
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)  # Restored after.

    def warns():
        warnings.warn("skipped 1 unusable file(s): a.png (no face found)", UserWarning)

    assert run_command("align_dataset.py", warns) == 0
    assert capsys.readouterr().err == ("align_dataset.py: warning: skipped 1 unusable "
                                       "file(s): a.png (no face found)\n")


def _script(relative_path):
    """Import a script as `python scripts/NAME.py` runs it: with its own folder
    on the import path (scripts import their sibling `repository`)."""
    folder = str((REPOSITORY / relative_path).parent)
    if folder not in sys.path:
        sys.path.append(folder)
    spec = importlib.util.spec_from_file_location(Path(relative_path).stem, REPOSITORY / relative_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("script, arguments", [
    ("scripts/results.py", ["--data", "{missing}", "--train-data", "{missing}"]),
    ("scripts/compression_results.py", ["--data", "{missing}"]),
    ("scripts/utkface_attributes.py", ["--data", "{missing}"]),
    ("benchmarks/benchmark.py", ["--data", "{missing}"]),
])
def test_scripts_reject_a_missing_data_folder_in_one_line(script, arguments, tmp_path, capsys):
    assert_rejects_a_missing_data_folder(script, arguments, tmp_path, capsys)


def assert_rejects_a_missing_data_folder(script, arguments, tmp_path, capsys):
    """`script` run with `arguments` ({missing}: a folder that does not exist,
    {runs}: a runs folder) ends in one line naming it, and writes nothing."""
    missing = tmp_path / "no-such-folder"
    argv = [argument.format(missing=missing, runs=tmp_path / "runs") for argument in arguments]
    main = _script(script).main
    assert run_command(Path(script).name, lambda: main(argv)) == 1
    assert capsys.readouterr().err == f"{Path(script).name}: error: no such file or directory: {missing}\n"
    assert not (tmp_path / "runs").exists()


def test_benchmark_needs_two_batches_of_images(capsys):
    main = _script("benchmarks/benchmark.py").main
    assert run_command("benchmark.py", lambda: main(["--images", "10"])) == 1
    assert "needs at least 128 images, got 10" in capsys.readouterr().err


def test_a_script_run_as_a_program_prints_no_traceback(tmp_path):
    result = subprocess.run([sys.executable, str(REPOSITORY / "scripts/compression_results.py"),
                             "--data", str(tmp_path / "missing")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"compression_results.py: error: no such file or directory: {tmp_path / 'missing'}")


def test_the_plain_keras_training_script_fits_and_saves(tmp_path):
    from tests.helpers import write_image_folder

    train_script = _script("scripts/train.py")
    folder = write_image_folder(tmp_path / "faces", n=24)
    out = tmp_path / "run"
    assert train_script.main(["--data", str(folder), "--preset", "seed", "--epochs", "1",
                              "--batch-size", "8", "--out", str(out)]) == 0
    assert (out / "model.keras").is_file() and (out / "samples.png").is_file()


def test_v2_targets_are_judged_from_the_evaluation():
    results_script = _script("scripts/results.py")

    def evaluation(psnr, ssim, face_rate, sample_levels, reconstruction_levels):
        return {"reconstruction": {"psnr": psnr, "ssim": ssim},
                "samples": {"face_rate": face_rate, "swd_levels": sample_levels},
                "reconstruction_swd": {"swd_levels": reconstruction_levels},
                "real_vs_real": {"face_rate": 0.97},
                "pca": {"reconstruction": {"psnr": 24.0, "ssim": 0.70},
                        "samples": {"face_rate": 0.9, "swd_levels": [200, 100]},
                        "reconstruction_swd": {"swd_levels": [300, 150]}}}

    good = {"faces": evaluation(25.5, 0.75, 0.95, [140, 70], [150, 75]),
            "faces_celeba": evaluation(25.1, 0.72, 0.95, [140, 70], [150, 75])}
    assert [met for _, met, _ in results_script.v2_targets(good)] == [True] * 5
    bad = {"faces": evaluation(24.5, 0.75, 0.85, [140, 80], [150, 75])}
    assert [met for _, met, _ in results_script.v2_targets(bad)] == [False, False, True, False]
    # Refined codes are judged on their own lines, beside the encoder's.
    bad["faces"]["refined"] = {"steps": 50, "reconstruction": {"psnr": 25.2, "ssim": 0.76},
                               "reconstruction_swd": {"swd_levels": [140, 80]}}
    judged = results_script.v2_targets(bad)
    assert [met for _, met, _ in judged] == [False, False, True, False, False, True]
    assert judged[3][0].startswith("the same, codes refined 50 steps")


def test_results_reuses_a_baseline_entry_only_when_its_inputs_are_unchanged(tmp_path):
    import numpy as np

    results_script = _script("scripts/results.py")
    model = tmp_path / "seed.keras"
    model.write_bytes(b"weights")
    images = np.zeros((4, 8, 8, 3), np.uint8)
    inputs = results_script.inputs_sha256(model, images, None, 16)
    previous = {"seed": {"inputs_sha256": inputs, "samples": {"swd": 1.0}}}
    assert results_script._reusable(previous, "seed", inputs)
    assert not results_script._reusable(previous, "v1", inputs)
    changed = images.copy()
    changed[0, 0, 0, 0] = 1
    assert results_script.inputs_sha256(model, changed, None, 16) != inputs
    assert results_script.inputs_sha256(model, images, images, 16) != inputs
    assert results_script.inputs_sha256(model, images, None, 2) != inputs
    model.write_bytes(b"retrained")
    assert not results_script._reusable(previous, "seed",
                                        results_script.inputs_sha256(model, images, None, 16))


def test_reproduce_lines_quote_arguments_as_a_shell_needs_them():
    import shlex

    from scripts.repository import reproduce_command

    arguments = ["--variants", "all codes KL 0.25", "--out", "docs/results"]
    line = reproduce_command(REPOSITORY / "research/second_stage/second_stage_study.py", arguments)
    assert line == "python research/second_stage/second_stage_study.py --variants 'all codes KL 0.25' " \
                   "--out docs/results"
    assert shlex.split(line)[2:] == arguments
