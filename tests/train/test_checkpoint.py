"""Reading checkpoints back: what a file that is not one, or is cut short, is told apart by."""

import pytest
import torch

from svdtrain.train.checkpoint import CorruptCheckpoint, load_checkpoint


def test_a_file_that_is_not_a_checkpoint_says_so(tmp_path):
    junk = tmp_path / "notes.pt"
    junk.write_text("hello")
    with pytest.raises(CorruptCheckpoint, match=r"notes.pt is not a PyTorch checkpoint \(torch.save writes"):
        load_checkpoint(junk)


def test_a_checkpoint_cut_short_names_what_torch_load_said(tmp_path):
    whole = tmp_path / "whole.pt"
    torch.save({"weight": torch.ones(64, 64)}, whole)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(whole.read_bytes()[:200])
    with pytest.raises(CorruptCheckpoint, match=r"cut.pt is not a readable checkpoint \(torch.load: \w+"):
        load_checkpoint(cut)
    assert torch.equal(load_checkpoint(whole)["weight"], torch.ones(64, 64))


def test_a_missing_file_is_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "absent.pt")
