"""``svdtrain compare`` on the seconds-long digits preset: equal epochs, one target, resume, bad input."""

import json
import shutil

import pytest

from svdtrain.cli import main

TINY = ["--preset", "smoke", "--start-epochs", "1", "--svd-epochs", "2", "--finetune-epochs", "1",
        "--train-limit", "320", "--test-limit", "200", "--lr-milestones", "1", "--target-reduction", "2"]


def _compare(out, *extra):
    return main(["compare", "--out", str(out), *TINY, *extra])


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    assert _compare(out, "--methods", "paper,budget,truncation,dense", "--budget-cuts", "1") == 0
    return out


def test_every_method_trains_as_long_at_the_same_target(compared):
    result = json.loads((compared / "compare.json").read_text())
    rows = {row["method"]: row for row in result["rows"]}
    assert list(rows) == ["paper", "budget", "truncation", "dense"] and result["epochs"] == 3
    for method, row in rows.items():
        epochs = [point["epoch"] for point in row["curve"]]
        assert epochs == [0, 1, 2, 3], method  # the start, then 3 training epochs whatever the method
        assert row["start"] == rows["paper"]["start"]  # one starting model
    dense_macs = rows["dense"]["macs"]
    assert rows["dense"]["start_macs"] == dense_macs
    for method in ("paper", "budget", "truncation"):
        assert rows[method]["macs"] <= dense_macs / 2, method
    stages = [point["stage"] for point in rows["truncation"]["curve"]]
    assert stages == ["start", "finetune", "finetune", "finetune"]
    assert (compared / "compare.png").stat().st_size > 0
    table = (compared / "compare.md").read_text()
    assert all(f"| {method} | 1 |" in table for method in rows) and "| s / epoch (median) |" in table
    assert all(entry["epoch_seconds"] > 0 for entry in json.loads((compared / "compare.json").read_text())["summary"])


def test_the_energy_a_cut_keeps_is_measured_each_svd_epoch(compared):
    rows = {row["method"]: row for row in json.loads((compared / "compare.json").read_text())["rows"]}
    paper = [p["target_energy"] for p in rows["paper"]["curve"] if "target_energy" in p]
    assert len(paper) == 2 and all(0 < e < 1 for e in paper)
    assert 0 < rows["paper"]["target_energy_before"] < 1
    # --budget-cuts 1: the budget's one cut reaches the target after its first SVD epoch, so a cut
    # at the target keeps everything left from then on
    budget = [p["target_energy"] for p in rows["budget"]["curve"] if "target_energy" in p]
    assert budget == [pytest.approx(1.0), pytest.approx(1.0)]
    config = json.loads((compared / "budget-s0" / "config.json").read_text())
    assert (config["svd_train"]["recipe"], config["svd_train"]["gradual_cuts"]) == ("budget", 1)


def test_a_killed_comparison_resumes_to_the_same_result(tmp_path, die_in_third_epoch, assert_same_final_model):
    reference, cut = tmp_path / "reference", tmp_path / "cut"
    stop = die_in_third_epoch
    assert _compare(cut, "--methods", "paper") == 130  # start 1, svd_train 1, then killed in svd_train 2
    stop()
    assert not (cut / "compare.json").exists()
    assert _compare(cut, "--methods", "paper") == 2  # a folder in use needs --resume
    assert _compare(cut, "--methods", "paper", "--resume") == 0
    assert _compare(reference, "--methods", "paper") == 0
    assert_same_final_model(reference / "paper-s0", cut / "paper-s0")
    a, b = (json.loads((p / "compare.json").read_text())["rows"][0] for p in (reference, cut))
    untimed = [[{k: v for k, v in point.items() if k != "seconds"} for point in row["curve"]] for row in (a, b)]
    assert a["final"] == b["final"] and untimed[0] == untimed[1]


@pytest.mark.parametrize("extra, message", [
    (["--methods", "paper,magic"], "unknown method(s) 'magic'"),
    (["--recipe", "budget"], "compare sets each run's recipe itself"),
    (["--seed", "3"], "compare sets each run's seed itself"),
    (["--target-reduction", "0"], "set --target-reduction (> 1)"),
    (["--svd-epochs", "0"], "compare needs svd_epochs > 0"),
    (["--budget-cuts", "-1"], "--budget-cuts must be >= 0"),
    (["--methods", "budget", "--budget-cuts", "5"], "method budget: gradual_cuts 5 needs as many SVD-training"),
    (["--methods", "truncation-plain", "--calibration", "whiten"],
     "method truncation-plain sets calibration 'none', but the command line sets 'whiten'"),
])  # fmt: skip
def test_bad_input_is_one_line_before_anything_runs(tmp_path, capsys, extra, message):
    out = tmp_path / "out"
    assert _compare(out, *extra) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.exists() or not any(p.name != ".svdtrain.lock" for p in out.iterdir())


def test_bad_seeds_and_a_file_as_out_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        _compare(tmp_path / "out", "--seeds", "a")
    assert exit_.value.code == 2 and "expected comma-separated integers" in capsys.readouterr().err
    file = tmp_path / "file"
    file.write_text("mine")
    assert _compare(file) == 2 and "exists and is not a directory" in capsys.readouterr().err
    assert file.read_text() == "mine"


def test_a_run_folder_from_before_an_option_was_added_resumes(compared, tmp_path):
    """A config.json written before an option existed (here start.lean_start) reads with the
    option's default: the comparison resumes instead of calling it another config."""
    out = tmp_path / "older"
    shutil.copytree(compared, out)
    path = out / "paper-s0" / "config.json"
    config = json.loads(path.read_text())
    del config["start"]["lean_start"]
    path.write_text(json.dumps(config))
    assert _compare(out, "--methods", "paper", "--resume") == 0
    config["svd_train"]["sparsity_weight"] = 123.0  # a value that differs still refuses
    path.write_text(json.dumps(config))
    assert _compare(out, "--methods", "paper", "--resume") == 2


def test_a_loss_table_shows_the_thousandths_methods_differ_by():
    from svdtrain.pipeline.compare import table

    row = {"method": "paper", "seeds": 1, "final": 1.56427, "per_seed": [1.56427], "macs": 25403392, "start": 1.56484,
           "over_best_truncation": -0.00213, "epoch_seconds": 65.0}  # fmt: skip
    text = table({"metric": "loss", "target_reduction": 2.0, "epochs": 3, "svd_epochs": 1, "summary": [row]})
    assert "| paper | 1 | 1.5643 | 1.5643 | 25,403,392 | 1.5648 | -0.0021 | 65 |" in text
    text = table({"metric": "accuracy", "target_reduction": 2.0, "epochs": 3, "svd_epochs": 1,
                  "summary": [{**row, "final": 0.8568, "per_seed": [0.8568], "start": 0.8758, "over_best_truncation": 0.0102}]})
    assert "| paper | 1 | 85.68% | 85.68% | 25,403,392 | 87.58% | +1.02 | 65 |" in text
