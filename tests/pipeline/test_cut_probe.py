"""recipe auto's cut probe: what it measures, when it measures, and what a run records."""

import json

import pytest

from svdtrain.cli import main
from svdtrain.cli.options import saved_config
from svdtrain.pipeline import cut_probe
from svdtrain.pipeline.config import BUDGET_BELOW_KEPT, BUDGET_RECIPE, load_preset, recipe, recipe_choice, resolve_config
from svdtrain.pipeline.cut_probe import CutProbe, probe_cut
from svdtrain.pipeline.run_folder import RunFolder

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
    configs = {r: resolve_config(overrides=_from(dense_checkpoint, target_reduction=r, recipe="truncation"))
               for r in (1.0001, 4.0)}  # fmt: skip
    mild, deep = (probe_cut(configs[r]) for r in (1.0001, 4.0))
    assert mild.dense > 0.5 and mild.dense == deep.dense  # the same images, the same dense model
    assert mild.images == 640  # 20 batches of 64 asked, the 640 training images there are
    assert mild.kept == pytest.approx(1.0, abs=0.02)
    assert 0 <= deep.kept < mild.kept
    on_test = probe_cut(configs[1.0001], split="test")
    assert on_test.images == 300


def test_recipe_auto_picks_by_the_measured_cut_where_it_can(dense_checkpoint):
    seen = []

    def measure(kept):
        def measured(config):
            seen.append(config)
            return kept

        return measured

    flags = _from(dense_checkpoint, target_reduction=3.0)  # channel-wise 3x: the factor rule says budget
    assert recipe_choice(flags)[0] == "budget"
    assert recipe_choice(flags, measure(0.9))[0] == "truncation"
    recipe, why = recipe_choice(flags, measure(0.5))
    assert recipe == "budget" and "keeps 50%" in why and f"{BUDGET_BELOW_KEPT:.0%}" in why
    assert [c.prune.calibration for c in seen] == ["whiten", "whiten"]  # the cut the recipes make
    assert all(c.prune.target_reduction == 3.0 and c.start.checkpoint == dense_checkpoint for c in seen)
    spatial = {**flags, "scheme": "spatial"}  # the factor rule says truncation; the measurement decides
    assert recipe_choice(spatial, measure(0.5))[0] == "budget"
    seen.clear()
    unmeasured = [
        {**flags, "start_epochs": 2},  # the start trains first: nothing to measure before the run
        {**flags, "target_reduction": 0.0, "target_speedup": 1.5},  # a speed target
        {**flags, "recipe": "truncation"},  # named
        {**flags, "gradual": True},  # a lever asks for SVD training
        {**flags, "checkpoint": ""},
    ]
    for other in unmeasured:
        recipe_choice(other, measure(0.99))
    assert seen == []
    assert resolve_config(overrides=flags, measure=measure(0.9)).svd_train.recipe == "truncation"
    budget = resolve_config(overrides=flags, measure=measure(0.5))
    assert all(budget.flat()[flag] == value for flag, value in BUDGET_RECIPE.items())


def test_a_run_records_the_recipe_its_measured_cut_picked_and_resumes_with_it(dense_checkpoint, tmp_path, capsys,
                                                                              monkeypatch):  # fmt: skip
    # Any cut keeps enough: truncation, where the factor rule gives a channel-wise 3x cut the budget recipe.
    monkeypatch.setattr(recipe, "BUDGET_BELOW_KEPT", 0.0)
    common = ["--out", str(tmp_path), "--preset", "smoke", "--checkpoint", dense_checkpoint, "--init", "svd",
              "--start-epochs", "0", "--svd-epochs", "1", "--finetune-epochs", "1", "--energy", "0",
              "--target-reduction", "3", *SMALL]  # fmt: skip
    assert main(["run", *common]) == 0
    out = capsys.readouterr().out
    assert "recipe auto: measuring the activation-aware cut to 3x fewer MACs" in out
    assert "recipe auto: the cut keeps" in out and "recipe truncation:" in out
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["svd_train"]["recipe"] == "truncation" and saved["finetune"]["epochs"] == 2
    # Resumed (cut off before its report), even with auto named again, the run keeps what it picked.
    (tmp_path / "report.json").unlink()
    assert main(["run", *common, "--recipe", "auto", "--resume"]) == 0
    assert "recipe auto: measuring" not in capsys.readouterr().out
    assert json.loads((tmp_path / "config.json").read_text()) == saved
    # A lone first stage in a new folder picks its recipe the same way.
    lone = [arg if arg != str(tmp_path) else str(tmp_path / "lone") for arg in common]
    assert main(["start", *lone]) == 0
    assert json.loads((tmp_path / "lone" / "config.json").read_text())["svd_train"]["recipe"] == "truncation"
    # Every cut too costly: the budget recipe, its values in the run's config.
    monkeypatch.setattr(recipe, "BUDGET_BELOW_KEPT", 1.01)
    costly = [arg if arg != str(tmp_path) else str(tmp_path / "costly") for arg in common]
    assert main(["start", *costly]) == 0
    flat = saved_config(RunFolder(tmp_path / "costly")).flat()
    assert flat["recipe"] == "budget" and all(flat[flag] == value for flag, value in BUDGET_RECIPE.items())


def test_a_starting_model_near_chance_leaves_the_choice_to_the_factor_rule():
    lines = []
    weak = CutProbe(dense=0.15, cut=0.05, images=640, classes=10)  # chance is 0.1
    assert not weak.informative and CutProbe(0.25, 0.05, 640, 10).informative
    assert cut_probe._kept(weak, lines.append) is None and "near chance" in lines[0]
    flags = {**load_preset("smoke"), "checkpoint": "x.pt", "init": "svd", "start_epochs": 0, "energy": 0.0,
             "target_reduction": 3.0}  # fmt: skip
    assert recipe_choice(flags, lambda config: None) == recipe_choice(flags)  # the factor rule's answer


def test_a_probe_with_a_missing_checkpoint_stops_with_one_line_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["run", "--out", str(out), "--preset", "smoke", "--checkpoint", str(tmp_path / "none.pt"),
                 "--init", "svd", "--start-epochs", "0", "--target-reduction", "2", "--energy", "0",
                 *SMALL])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1 and "none.pt" in err
    assert not (out / "config.json").exists()
