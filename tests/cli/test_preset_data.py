"""A preset runs from any directory: its data come from --data, $SVDTRAIN_DATA or the cache
folder, and where they are nowhere the one-line error says where it looked."""

import json

from svdtrain.cli import main

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n" * 40


def test_a_preset_finds_its_data_in_svdtrain_data_from_another_directory(elsewhere, monkeypatch):
    (elsewhere / "data").mkdir()
    (elsewhere / "data/tinyshakespeare.txt").write_text(TEXT)
    monkeypatch.setenv("SVDTRAIN_DATA", str(elsewhere / "data"))
    assert main(["run", "--preset", "smoke-lm", "--out", "run", "--export-onnx", "false"]) == 0
    saved = json.loads((elsewhere / "work/run/config.json").read_text())
    assert saved["data"]["path"] == "tinyshakespeare.txt"  # the config says what the preset said, not where it was


def test_a_preset_without_its_data_says_where_it_looked(elsewhere, capsys):
    assert main(["run", "--preset", "smoke-lm", "--out", "run"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert (f"data of dataset text_char not found: tinyshakespeare.txt is in none of {elsewhere / 'work'} (the "
            f"current directory), {elsewhere / 'home/.cache/svdtrain/data'} ($SVDTRAIN_DATA is not set); give "
            f"--data PATH, or put it in a folder $SVDTRAIN_DATA names") in err  # fmt: skip


def test_a_step_two_preset_names_its_step_one(elsewhere, capsys):
    """Before any data is read: the start checkpoint is an earlier command's output."""
    assert main(["run", "--preset", "cpu-resnet20-channel-hoyer", "--out", "run"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "`svdtrain start --preset cpu-resnet20-adapt --out runs/cpu/adapt` writes it" in err
