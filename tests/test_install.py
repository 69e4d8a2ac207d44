"""A built wheel, installed into a fresh virtual environment, finds its
default model from any directory (the model ships inside the package)."""

import importlib.util
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parent.parent


@pytest.mark.slow  # Builds a wheel and a virtual environment.
def test_a_built_wheel_generates_with_its_default_model_from_anywhere(tmp_path):
    # Build from a copy of what the wheel needs, so nothing is written into the checkout.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPOSITORY / name, source / name)
    shutil.copytree(REPOSITORY / "cvae", source / "cvae",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPOSITORY / "saved_models", source / "saved_models",
                    ignore=shutil.ignore_patterns("__pycache__", "baselines"))
    wheels = tmp_path / "wheels"
    # Build with the installed setuptools when there is one (no download).
    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation,
                    "-q", "-w", str(wheels), str(source)], check=True)
    wheel = next(wheels.glob("cvae-*.whl"))

    # A fresh environment that reuses the installed dependencies (TensorFlow is
    # large) but holds its own cvae, from the wheel. The dependencies are the
    # ones this test runs with: `venv --system-site-packages` would see the base
    # interpreter's instead, which inside a virtual environment lack them. A
    # .pth file appends this interpreter's site-packages after the new
    # environment's own (its .pth files, among them an editable cvae's, are not run).
    environment = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(environment)], check=True)
    python = environment / "bin" / "python"
    own_site = subprocess.run([str(python), "-c", "import sysconfig; "
                               "print(sysconfig.get_paths()['purelib'])"],
                              check=True, capture_output=True, text=True).stdout.strip()
    (Path(own_site) / "parent_environment.pth").write_text(
        "\n".join(site.getsitepackages()) + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", str(wheel)],
                   check=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    located = subprocess.run([str(python), "-c", "import cvae.model.saving as f; print(f.__file__); "
                              "print(f.default_model_path())"], cwd=elsewhere, check=True,
                             capture_output=True, text=True).stdout.split()
    assert all(path.startswith(str(environment)) for path in located), located
    result = subprocess.run([str(environment / "bin" / "cvae"), "generate", "-n", "2",
                             "-o", "faces.png"], cwd=elsewhere, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (elsewhere / "faces.png").is_file()
