"""Bad input found by probing the CLI and the API as a new user would: each is one clear line."""

import subprocess
import sys

import pytest
import torch
from torch import nn

import svdtrain
from svdtrain.cli import main


def test_a_config_nested_thousands_deep_is_one_line(tmp_path, capsys):
    config = tmp_path / "deep.yaml"
    config.write_text("optim:\n  lr_milestones: " + "[" * 5000 + "]" * 5000 + "\n")
    assert main(["run", "--config", str(config), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"svdtrain run: error: {config} nests too deep to be a config (lists or mappings thousands of levels deep)"
    assert not (tmp_path / "run").exists()


def test_a_model_on_the_meta_device_is_refused_by_name():
    with torch.device("meta"):
        model = nn.Sequential(nn.Linear(8, 4))
    with pytest.raises(ValueError, match=r"weight '0.weight' is on the meta device and has no values to factor"):
        svdtrain.decompose(model)
    assert not svdtrain.factored_weights(model)


def test_cli_warnings_are_one_line_without_source():
    code = ("import warnings; from svdtrain.cli import main; main(['presets', 'smoke']); "
            "warnings.warn('svdtrain.decompose left 1 weight(s) dense:\\n  embed.weight (embedding)')")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert done.stderr == "svdtrain: warning: svdtrain.decompose left 1 weight(s) dense:   embed.weight (embedding)\n"
