"""svdtrain parallel: several commands at once, each with its share of the threads."""

import json

from svdtrain.cli import main

TINY = "--preset smoke --start-epochs 1 --svd-epochs 1 --finetune-epochs 1 --train-limit 128 --test-limit 64"


def test_two_seeds_run_side_by_side_and_each_is_an_ordinary_run(tmp_path, capsys):
    commands = [f"run {TINY} --seed {seed} --out {tmp_path / f's{seed}'}" for seed in (0, 1)]
    assert main(["parallel", "--logs", str(tmp_path / "logs"), *commands]) == 0
    out = capsys.readouterr().out
    assert "2 of 2 succeeded" in out
    reports = [json.loads((tmp_path / f"s{seed}" / "report.json").read_text()) for seed in (0, 1)]
    assert [r["config"]["run"]["seed"] for r in reports] == [0, 1]
    assert (tmp_path / "logs" / "exit_codes.tsv").read_text().count("\t0\t") == 2


def test_a_failing_command_is_named_and_the_others_still_finish(tmp_path, capsys):
    good = f"run {TINY} --out {tmp_path / 'good'}"
    bad = f"run {TINY} --lr -1 --out {tmp_path / 'bad'}"
    assert main(["parallel", "--jobs", "1", "--logs", str(tmp_path / "logs"), bad, good]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == f"svdtrain parallel: error: command(s) 0 failed; see {tmp_path / 'logs'}/<index>.log"
    assert (tmp_path / "good" / "report.json").exists()
    assert "lr must be > 0" in (tmp_path / "logs" / "0.log").read_text()


def test_a_line_that_is_not_an_svdtrain_command_is_one_line(tmp_path, capsys):
    assert main(["parallel", "--logs", str(tmp_path), "rm -rf /"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "each command is an svdtrain subcommand line" in err
