"""The presets as shipped: each says what it does, how long it takes and where its files come
from, and none depends on the current directory or on this repository's layout."""

import re
from pathlib import Path

import pytest

from svdtrain.pipeline.config import preset_names, preset_notes, preset_path, resolve_config
from svdtrain.pipeline.run_data import data_path, start_checkpoint
from svdtrain.pipeline.run_folder import RunFolder


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_has_a_description_and_a_time_and_names_its_files_by_name(name):
    notes, config = preset_notes(name), resolve_config(name)
    assert 20 <= len(notes.description) <= 100 and not notes.description.startswith(("time:", "needs:"))
    assert re.search(r"(\d|seconds).* (on 2 CPU cores|\(estimated\))", notes.time), notes.time
    assert notes.time.startswith("GPU") == name.startswith("paper-"), notes.time
    assert "../" not in preset_path(name).read_text()  # no path into this repository's neighbours
    files = [config.data.path] * (config.data.dataset != "digits") + [config.start.checkpoint] * bool(notes.needs)
    for file in files:
        assert not Path(file).is_absolute() and not file.startswith("."), file  # looked up, never as given
    if config.start.checkpoint and not notes.needs:
        assert "/" not in config.start.checkpoint  # a public model, looked up in the data folders


@pytest.mark.parametrize("name", [n for n in preset_names() if preset_notes(n).needs])
def test_needs_is_the_command_writing_the_start_checkpoint(name):
    needs = preset_notes(name).needs.split()
    assert needs[:3] == ["svdtrain", "start", "--preset"] and needs[3] in preset_names() and needs[4] == "--out"
    assert RunFolder(needs[5]).adapted_dense == Path(resolve_config(name).start.checkpoint)
    assert resolve_config(needs[3]).start.epochs > 0  # it trains, so it writes adapted_dense.pt


def test_a_missing_start_checkpoint_names_the_command_writing_it(elsewhere):
    with pytest.raises(FileNotFoundError, match=r"start checkpoint not found: runs/cpu/adapt56/adapted_dense.pt is "
                                                r"in none of .*; `svdtrain start --preset cpu-resnet56-adapt --out "
                                                r"runs/cpu/adapt56` writes it, or give --checkpoint PATH, or put it"):
        start_checkpoint(resolve_config("cpu-resnet56-channel-hoyer"))
    with pytest.raises(FileNotFoundError, match=r"start checkpoint not found: mine.pt is in none of .*; give "
                                                r"--checkpoint PATH, or put it in a folder \$SVDTRAIN_DATA names"):
        start_checkpoint(resolve_config("cpu-resnet56-channel-hoyer", overrides={"checkpoint": "mine.pt"}))


def test_cifar10_downloads_into_the_first_data_folder_not_the_current_directory(elsewhere):
    config = resolve_config("paper-resnet20-channel-hoyer")
    assert data_path(config) == elsewhere / "home/.cache/svdtrain/data/cifar10"
    with pytest.raises(FileNotFoundError, match="cifar10 is in none of .*; give --data PATH, or --download true"):
        data_path(config.updated(download=False))
