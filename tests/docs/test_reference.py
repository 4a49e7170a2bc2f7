"""docs/reference.md is generated from the option declarations and must match them."""

from pathlib import Path

from svdtrain.cli.reference import COMMAND, config_reference, main
from svdtrain.pipeline.config import OPTIONS, RECIPES

ROOT = Path(__file__).resolve().parents[2]


def test_reference_page_is_current() -> None:
    page = (ROOT / "docs" / "reference.md").read_text(encoding="utf-8")
    assert page == config_reference(), f"docs/reference.md is out of date: run `{COMMAND}` from the repository root"


def test_reference_names_every_option_and_recipe() -> None:
    text = config_reference()
    for flag in OPTIONS:
        assert f"| `--{flag.replace('_', '-')}` |" in text, flag
    for name in RECIPES:
        assert f"| `{name}` |" in text, name


def test_write_creates_the_page(tmp_path: Path) -> None:
    target = tmp_path / "reference.md"
    assert main(["--write", str(target)]) == 0
    assert target.read_text(encoding="utf-8") == config_reference()
