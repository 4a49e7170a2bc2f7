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


@pytest.mark.parametrize(("flag", "value"), [("--lr", "inf"), ("--sparsity-weight", "nan"), ("--lr", "-inf")])
def test_a_non_finite_number_is_named_as_such(tmp_path, capsys, flag, value):
    assert main(["run", "--preset", "smoke", f"{flag}={value}", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(f"must be a finite number, got {value!r}") and len(err.splitlines()) == 1


def test_a_config_of_many_unknown_keys_names_ten_quickly(tmp_path, capsys):
    config = tmp_path / "many.yaml"
    config.write_text("".join(f"key{i}: 1\n" for i in range(20_000)))
    assert main(["run", "--config", str(config), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and len(err) < 1_000
    assert "key9" in err and "key10," not in err and "and 19,990 more" in err


def test_a_full_disk_names_the_file_and_leaves_the_old_one(tmp_path, monkeypatch):
    from svdtrain import io

    target = tmp_path / "report.json"
    target.write_text("old\n")

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(io.os, "fsync", full)
    with pytest.raises(OSError, match=f"cannot write {target}: No space left on device"):
        io.atomic_write_text(target, "new\n")
    assert target.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["report.json"]


@pytest.mark.parametrize("command", ["run", "start"])
def test_an_unreachable_target_is_refused_before_anything_trains(tmp_path, capsys, command):
    out = tmp_path / "run"
    assert main([command, "--preset", "smoke", "--target-reduction", "1e9", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "target_reduction 1e+09 is out of reach for digits_cnn: even rank 1 in every factored weight cuts" in err
    assert not any(out.glob("start*"))


def test_an_unreachable_speed_target_is_refused_before_anything_trains(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--preset", "smoke", "--target-speedup", "1000", "--energy", "0", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "a 1000x speedup is out of reach here: even the fastest ranks measure" in err
    assert not any(out.glob("start*"))
