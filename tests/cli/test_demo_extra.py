"""`svdtrain demo` needs only the `[demo]` extra: the packages the other extras bring are never imported.

The demo runs in a Python that sees site-packages without them (a folder of links to everything
else, `-S` so no other site folder is read), as a fresh venv with only `[demo]` would."""

import site
import subprocess
import sys
from pathlib import Path

import svdtrain

OTHER_EXTRAS = ("matplotlib", "tqdm", "PIL", "pillow", "onnx", "onnxruntime", "onnxscript", "transformers",
                "safetensors", "lightning", "pytorch_lightning", "accelerate", "torch_pruning")  # fmt: skip


def _without(folder: Path, absent: tuple[str, ...]) -> Path:
    folder.mkdir()
    for packages in map(Path, site.getsitepackages()):
        for entry in packages.iterdir():
            top = entry.name.split("-")[0].split(".")[0].lower()
            if top not in {name.lower() for name in absent} and not (folder / entry.name).exists():
                (folder / entry.name).symlink_to(entry)
    return folder


def _demo(tmp_path: Path, absent: tuple[str, ...]) -> subprocess.CompletedProcess:
    source = Path(svdtrain.__file__).parents[1]
    env = {"PYTHONPATH": f"{source}:{_without(tmp_path / 'site', absent)}", "HOME": str(tmp_path)}
    args = ["demo", "--out", str(tmp_path / "demo"), "--dense-epochs", "1", "--svd-epochs", "1", "--finetune-epochs", "1"]
    return subprocess.run([sys.executable, "-S", "-m", "svdtrain", *args], env=env, capture_output=True, text=True,
                          timeout=300)  # fmt: skip


def test_the_demo_runs_without_the_other_extras(tmp_path):
    done = _demo(tmp_path, OTHER_EXTRAS)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "demo" / "report.json").exists()


def test_the_command_line_on_a_core_install_names_the_extra_in_one_line(tmp_path):
    done = _demo(tmp_path, (*OTHER_EXTRAS, "pydantic", "yaml", "sklearn", "scikit_learn"))
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1
    assert "the command line needs an extra: pip install 'svdtrain[demo]'" in done.stderr
