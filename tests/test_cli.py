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
    assert result.stderr.strip().splitlines()[-1].startswith("cvae: error: no images")
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
