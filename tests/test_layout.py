"""The package's layout: each part imports only the parts below it
(DEVELOPERS.md, "Layout of the repository"), read from the source."""

import ast
from pathlib import Path

import cvae

PACKAGE = Path(cvae.__file__).parent
# Top to bottom; a part may import its own modules and any part below it.
LAYERS = (("cli",), ("serve",), ("codec",), ("sampling",), ("training",), ("evaluation",),
          ("model",), ("data",), ("anomaly", "figures"), ("atomic", "batching", "precision", "quiet"),
          ("errors",))
# The one call up: VAE.generate, a convenience, draws its codes with the
# samplers, importing them when it is called.
ALLOWED_UPWARD = {("model/vae.py", "cvae.sampling.samplers")}


def _layer(part):
    return next(index for index, parts in enumerate(LAYERS) if part in parts)


def _part(dotted):
    return dotted.split(".")[1]


def _imports(path):
    """The cvae modules a file imports, anywhere in it (deferred imports too)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cvae."):
            yield node.module
        elif isinstance(node, ast.ImportFrom) and node.module == "cvae":
            yield from (f"cvae.{alias.name}" for alias in node.names if alias.name != "__version__")
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name.startswith("cvae."))


def _package_files():
    return [path for path in sorted(PACKAGE.rglob("*.py"))
            if path.relative_to(PACKAGE).parts[0] not in ("__init__.py", "saved_models", "web")]


def test_every_part_of_the_package_has_a_layer():
    parts = {path.relative_to(PACKAGE).parts[0].removesuffix(".py") for path in _package_files()}
    assert parts == {part for layer in LAYERS for part in layer}


def test_imports_run_down_the_layers():
    upward = set()
    for path in _package_files():
        relative = path.relative_to(PACKAGE).as_posix()
        here = _layer(relative.split("/")[0].removesuffix(".py"))
        for module in _imports(path):
            if _layer(_part(module)) < here:
                upward.add((relative, module))
    assert upward == ALLOWED_UPWARD


def test_every_folder_of_the_package_is_installed():
    import tomllib

    pyproject = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())
    installed = set(pyproject["tool"]["setuptools"]["packages"])
    folders = {"cvae." + path.parent.relative_to(PACKAGE).as_posix().replace("/", ".")
               for path in PACKAGE.rglob("__init__.py") if path.parent != PACKAGE}
    assert folders <= installed
