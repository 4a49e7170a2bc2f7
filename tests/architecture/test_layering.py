"""The library never imports the application: svdtrain.pipeline and svdtrain.cli sit on top."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "svdtrain"
LIBRARY = ("linalg", "layers", "surgery", "deploy", "train", "tasks", "data", "models", "integrations")
APPLICATION = ("svdtrain.pipeline", "svdtrain.cli")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


@pytest.mark.parametrize("package", LIBRARY)
def test_library_never_imports_the_application(package: str) -> None:
    offenders = [f"{path.relative_to(SRC)} imports {name}" for path in sorted((SRC / package).rglob("*.py"))
                 for name in _imports(path) if name.startswith(APPLICATION)]  # fmt: skip
    assert not offenders, offenders


def test_the_deployed_modules_are_a_leaf() -> None:
    """Layer types build their deployed form from svdtrain.deploy.rnn, which imports no other part of
    svdtrain (exported files of models using it load without svdtrain), so that import makes no cycle;
    the export machinery (svdtrain.deploy.export) is above the layers and never imported by them."""
    assert not [name for name in _imports(SRC / "deploy" / "rnn.py") if name.startswith("svdtrain")]
    offenders = [str(path.relative_to(SRC)) for path in sorted((SRC / "layers").rglob("*.py"))
                 if any(name.startswith("svdtrain.deploy.export") for name in _imports(path))]  # fmt: skip
    assert not offenders, offenders
