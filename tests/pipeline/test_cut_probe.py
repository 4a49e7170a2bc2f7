"""svdtrain probe: what it measures, what it recommends, and its one-line errors."""

import pytest

from svdtrain.cli import main
from svdtrain.pipeline import cut_probe
from svdtrain.pipeline.config import load_preset, resolve_config
from svdtrain.pipeline.cut_probe import CutProbe, probe_cut

SMALL = ["--train-limit", "640", "--test-limit", "300"]


@pytest.fixture(scope="module")
def dense_checkpoint(tmp_path_factory):
    """A digits CNN trained dense for a few epochs (the start stage's adapted_dense.pt)."""
    out = tmp_path_factory.mktemp("dense")
    assert main(["start", "--out", str(out), "--preset", "smoke", "--init", "svd", "--start-epochs", "4", *SMALL]) == 0
    return str(out / "adapted_dense.pt")


def _from(checkpoint, **flags):
    return {**load_preset("smoke"), "checkpoint": checkpoint, "init": "svd", "start_epochs": 0, "energy": 0.0,
            "train_limit": 640, "test_limit": 300, **flags}  # fmt: skip


def test_a_cut_that_drops_nothing_keeps_the_accuracy_and_a_deeper_cut_keeps_less(dense_checkpoint):
    configs = {r: resolve_config(overrides=_from(dense_checkpoint, target_reduction=r))
               for r in (1.0001, 4.0)}  # fmt: skip
    mild, deep = (probe_cut(configs[r]) for r in (1.0001, 4.0))
    assert mild.dense > 0.5 and mild.dense == deep.dense  # the same images, the same dense model
    assert mild.images == 640  # 20 batches of 64 asked, the 640 training images there are
    assert mild.kept == pytest.approx(1.0, abs=0.02)
    assert 0 <= deep.kept < mild.kept
    on_test = probe_cut(configs[1.0001], split="test")
    assert on_test.images == 300


def test_the_recommendation_follows_the_measured_line_and_says_why():
    assert cut_probe.recommendation(CutProbe(0.9, 0.5, 640, 10)).startswith("--recipe budget: the cut keeps 55.6%")
    assert cut_probe.recommendation(CutProbe(0.9, 0.8, 640, 10)).startswith("--recipe truncation: the cut keeps 88.9%")
    weak = CutProbe(dense=0.15, cut=0.05, images=640, classes=10)  # chance is 0.1
    assert not weak.informative and CutProbe(0.25, 0.05, 640, 10).informative
    assert cut_probe.recommendation(weak).startswith("none: the starting model scores 0.1500, near chance")
    won = [kept for _, kept, margin in cut_probe.EVIDENCE if margin > 0]
    lost = [kept for _, kept, margin in cut_probe.EVIDENCE if margin <= 0]
    assert max(won) < cut_probe.BUDGET_BELOW_KEPT <= min(lost)  # the line separates what was measured


def test_svdtrain_probe_prints_the_cut_a_recommendation_its_evidence_and_limits(dense_checkpoint, tmp_path, capsys):
    args = ["--preset", "smoke", "--checkpoint", dense_checkpoint, "--init", "svd", "--start-epochs", "0",
            "--energy", "0", "--target-reduction", "3", "--batches", "4", *SMALL]  # fmt: skip
    assert main(["probe", *args]) == 0
    out = capsys.readouterr().out
    expected = probe_cut(resolve_config("smoke", overrides=_from(dense_checkpoint, target_reduction=3.0)), batches=4)
    assert f"keeping {expected.kept:.1%} of it" in out and "on 256 training images" in out
    assert "recommendation: --recipe " in out and "evidence" in out and "limits:" in out
    assert list(tmp_path.iterdir()) == []  # it trains and writes nothing


def test_a_probe_with_a_missing_checkpoint_or_no_target_stops_with_one_line(tmp_path, capsys):
    common = ["--preset", "smoke", "--init", "svd", "--start-epochs", "0", "--energy", "0", *SMALL]
    assert main(["probe", *common, "--checkpoint", str(tmp_path / "none.pt"), "--target-reduction", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "none.pt" in err
    assert main(["probe", *common, "--checkpoint", "x.pt"]) == 2
    assert "needs a starting checkpoint and a MACs target" in capsys.readouterr().err
    assert main(["probe", "--preset", "smoke", "--batches", "0"]) == 2
