"""The `cvae` command as a whole: help texts and one-line errors."""

import subprocess
import sys

import pytest

from cvae.cli import main


def _run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "cvae.cli", *args], capture_output=True,
                          text=True, cwd=cwd)


@pytest.mark.parametrize("args,message", [
    (["train", "--data", "/no/such/folder"], "no such file or directory"),
    (["train", "--data", ".", "--epochs", "0"], "expected a positive integer"),
    (["train", "--data", ".", "--crop-box", "1,2,3"], "LEFT,TOP,WIDTH,HEIGHT"),
    (["train", "--data", ".", "--preset", "nope"], "invalid choice"),
])
def test_bad_input_is_one_line_and_a_non_zero_exit(args, message, tmp_path):
    # In an empty folder: the default run directory (runs/PRESET) must not be one the
    # checkout happens to hold.
    result = _run_cli(*args, cwd=tmp_path)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(error_lines) == 1


def test_an_empty_folder_is_a_clear_error(tmp_path):
    (tmp_path / "faces").mkdir()
    result = _run_cli("train", "--data", str(tmp_path / "faces"), "--out", str(tmp_path / "run"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].endswith("the folder holds no images "
                                                           "(.jpg, .jpeg, .png, .bmp, .webp, .gif)")
    assert not (tmp_path / "run").exists()


def test_help_explains_the_commands():
    result = _run_cli("--help")
    assert result.returncode == 0 and "train" in result.stdout
    assert _run_cli("--version").stdout.startswith("cvae ")
    result = _run_cli("train", "--help")
    assert "--precision" in result.stdout and "resumes" in result.stdout
    assert "--time-limit" in result.stdout
    result = _run_cli("evaluate", "--help")
    assert "--train-data" in result.stdout and "SWD" in result.stdout


def test_every_argument_of_every_command_is_explained():
    import argparse

    from cvae.cli import build_parser

    commands = next(action for action in build_parser()._actions
                    if isinstance(action, argparse._SubParsersAction)).choices
    unexplained = [f"{name} {action.option_strings or action.dest}"
                   for name, command in commands.items() for action in command._actions
                   if not action.help]
    assert unexplained == []


def test_help_shows_defaults_but_not_none(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    assert "images per training step (default: 64)" in " ".join(text.split())
    assert "(default: None)" not in text and "(default: True)" not in text


def test_help_texts_name_doc_sections_that_exist():
    import re
    from pathlib import Path

    from cvae.cli import build_parser

    parser = build_parser()
    texts = [action.help or "" for sub in parser._subparsers._group_actions[0].choices.values()
             for action in sub._actions]
    named = [reference for text in texts
             for reference in re.findall(r'(docs/[\w.]+\.md), "([^"]+)"', text)]
    assert named
    for page, section in named:
        document = (Path(__file__).resolve().parent.parent / page).read_text(encoding="utf-8")
        assert section in re.findall(r"^#+ (.+)$", document, re.M), (page, section)


def test_argument_errors_are_one_line_naming_the_help():
    result = _run_cli("train", "--data", ".", "--epochs", "0")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "cvae train: error: argument --epochs: expected a positive integer, got '0' "
        "(see cvae train --help)"]


def test_training_paths_are_checked_before_tensorflow_loads(tmp_path, monkeypatch, capsys):
    cli_main = sys.modules["cvae.cli.main"]  # cvae.cli.main is also the function

    def refuse():
        raise AssertionError("TensorFlow was loaded before the paths were checked")

    monkeypatch.setattr(cli_main, "load_backend_quietly", refuse)
    (tmp_path / "empty").mkdir()
    (tmp_path / "faces").mkdir()
    (tmp_path / "faces" / "a.png").write_bytes(b"")
    for args, message in [
            (["--data", str(tmp_path / "missing")], "--data"),
            (["--data", str(tmp_path / "faces"), "--val-data", str(tmp_path / "empty")],
             "the folder holds no images"),
            (["--data", str(tmp_path / "faces"), "--initial-model", str(tmp_path / "no.keras")],
             "--initial-model")]:
        assert main(["train", *args, "--out", str(tmp_path / "run")]) == 1
        errors = capsys.readouterr().err.splitlines()
        assert len(errors) == 1 and errors[0].startswith("cvae: error: ") and message in errors[0]
    assert not (tmp_path / "run").exists()


def test_ctrl_c_while_tensorflow_loads_is_one_line(monkeypatch, capsys):
    cli_main = sys.modules["cvae.cli.main"]  # cvae.cli.main is also the function

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_main, "load_backend_quietly", interrupted)
    assert main(["generate", "-n", "1", "-o", "never.png"]) == 130
    assert capsys.readouterr().err.splitlines() == ["cvae: interrupted"]


def test_a_file_in_the_way_of_an_output_folder_is_named(tmp_path, capsys):
    from tests.helpers import tiny_model_file, write_image_folder

    model = tiny_model_file(tmp_path)
    faces = write_image_folder(tmp_path / "faces", n=2)  # face_001.png at the top
    (tmp_path / "taken").write_text("a file, not a folder")
    assert main(["compress", str(faces), "-o", str(tmp_path / "taken" / "sub"), "--mode", "int8",
                 "--model", str(model), "--align", "off"]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("cvae: error: ") and "Errno" not in error
    assert "not a folder" in error


def test_generate_and_interpolate_overwrite_only_with_force(tmp_path, capsys):
    from tests.helpers import tiny_model_file

    model = tiny_model_file(tmp_path)
    grid = tmp_path / "grid.png"
    grid.write_text("someone's file")
    for command in (["generate", "-n", "2", "-o", str(grid)],
                    ["interpolate", "seed:1", "seed:2", "-o", str(grid)]):
        assert main([*command, "--model", str(model)]) == 1
        assert capsys.readouterr().err.strip() == f"cvae: error: {grid} exists (use --force to overwrite)"
        assert grid.read_text() == "someone's file"
    assert main(["generate", "-n", "2", "-o", str(grid), "--model", str(model), "--force"]) == 0
    assert grid.read_bytes().startswith(b"\x89PNG")
    assert main(["interpolate", "seed:-3", "seed:2", "-o", str(tmp_path / "strip.png"),
                 "--model", str(model)]) == 1
    assert capsys.readouterr().err.strip() == (
        "cvae: error: A: expected seed:N with a whole number N >= 0, got 'seed:-3'")


def test_a_huge_grid_is_refused_and_separate_faces_stream(tmp_path, capsys):
    from tests.helpers import tiny_model_file

    model = tiny_model_file(tmp_path)
    assert main(["generate", "-n", "100000", "-o", str(tmp_path / "all.png"),
                 "--model", str(model)]) == 1
    assert "--separate" in capsys.readouterr().err
    assert main(["generate", "-n", "300", "--separate", str(tmp_path / "each"),
                 "--model", str(model)]) == 0
    assert len(list((tmp_path / "each").iterdir())) == 300
