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


DEPRECATED_SHIMS = {"deploy/export.py"}  # forwards an old name to svdtrain.export, with a warning


def test_the_deployed_modules_are_a_leaf() -> None:
    """Layer types build their deployed form from svdtrain.deploy, whose modules import no other part
    of svdtrain (exported files of models using them load without svdtrain), so that import makes no
    cycle; the exporter (svdtrain.export, which needs the model zoo) is above the layers."""
    for path in sorted((SRC / "deploy").glob("*.py")):
        if str(path.relative_to(SRC)) not in DEPRECATED_SHIMS:
            assert not [n for n in _imports(path) if n.startswith("svdtrain") and not n.startswith("svdtrain.deploy")]
    offenders = [str(path.relative_to(SRC)) for path in sorted((SRC / "layers").rglob("*.py"))
                 if any(name.startswith("svdtrain.export") for name in _imports(path))]  # fmt: skip
    assert not offenders, offenders


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_imports(path: Path) -> set[str]:
    """Imports anywhere in the file (a function-level import closes a circle as well), except
    those under ``if TYPE_CHECKING:``, which never run."""
    tree = ast.parse(path.read_text())
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
               for child in node.body for n in ast.walk(child)}  # fmt: skip
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


@pytest.mark.parametrize("package", ["surgery", "train", "layers", "linalg", "deploy", "pipeline"])
def test_no_import_circle_among_a_packages_modules(package: str) -> None:
    """Within a package, module imports form no circle (the package's own __init__, which only
    re-exports, is left out): e.g. scoring and applying ranks sit below the rank policies."""
    modules = {_module_name(p): p for p in (SRC / package).rglob("*.py") if p.name != "__init__.py"}
    edges = {name: {m for m in _runtime_imports(path) if m in modules and m != name} for name, path in modules.items()}
    state: dict[str, int] = {}

    def circle_from(name: str, trail: list[str]) -> list[str] | None:
        state[name] = 1
        for other in sorted(edges[name]):
            if state.get(other) == 1:
                return trail + [name, other]
            if other not in state and (found := circle_from(other, trail + [name])):
                return found
        state[name] = 2
        return None

    for name in sorted(modules):
        if name not in state and (found := circle_from(name, [])):
            pytest.fail(" -> ".join(found[found.index(found[-1]):]))
