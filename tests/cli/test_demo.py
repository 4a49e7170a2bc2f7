"""The demo end to end: its real result, its report schema, and its errors."""

import json

import pytest

from svdtrain.cli import main

TINY = ["--dense-epochs", "1", "--svd-epochs", "1", "--finetune-epochs", "1", "--width", "8"]


def _report(out):
    return json.loads((out / "report.json").read_text())


def test_demo_shows_real_compression(tmp_path, capsys):
    """The README's main job: >= 2x fewer MACs at <= 1 point lower test accuracy."""
    assert main(["demo", "--out", str(tmp_path)]) == 0
    report = _report(tmp_path)
    base, small = report["baseline"], report["compact"]
    assert base["macs"] >= 2 * small["macs"]
    assert small["accuracy"] >= base["accuracy"] - 0.01
    assert "MACs reduction" in capsys.readouterr().out


def test_demo_report_schema(tmp_path):
    assert main(["demo", "--out", str(tmp_path), *TINY]) == 0
    report = _report(tmp_path)
    for key in ("baseline", "compact"):
        assert set(report[key]) >= {"accuracy", "macs", "params"}
        assert 0.0 <= report[key]["accuracy"] <= 1.0
        assert report[key]["macs"] > 0 and report[key]["params"] > 0
    assert report["layers"] and all(1 <= layer["rank"] <= layer["full_rank"] for layer in report["layers"])
    assert {layer["name"] for layer in report["layers"]} >= {"classifier.weight", "features.0.weight"}
    assert set(report["stages"]) == {"dense", "svd_train", "prune", "finetune"}
    assert report["config"]["width"] == 8


def test_demo_refuses_finished_run(tmp_path, capsys):
    (tmp_path / "report.json").write_text('{"kept": true}')
    assert main(["demo", "--out", str(tmp_path), *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert "already holds a finished run" in err and len(err.splitlines()) == 1
    assert json.loads((tmp_path / "report.json").read_text()) == {"kept": True}
    (tmp_path / "my-notes.txt").write_text("not svdtrain's")
    assert main(["demo", "--out", str(tmp_path), "--overwrite", *TINY]) == 0
    assert "baseline" in _report(tmp_path)
    assert (tmp_path / "my-notes.txt").read_text() == "not svdtrain's"  # --overwrite clears only its own files


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--energy", "1.5", "energy must be a number in [0, 1)"),
        ("--scheme", "diagonal", "unknown scheme 'diagonal'"),
        ("--sparsity-kind", "hoyr", "unknown sparsity_kind 'hoyr'; valid values are l1, hoyer, hoyer_square"),
        ("--sparsity-weight", "-1", "sparsity_weight must be >= 0"),
        ("--dense-epochs", "0", "dense_epochs must be >= 1"),
        ("--seed", "-1", "seed must be >= 0, got '-1'"),
        ("--ortho-weight", "-0.5", "ortho_weight must be >= 0"),
    ],
)
def test_demo_bad_input_is_one_line(tmp_path, capsys, flag, value, message):
    assert main(["demo", "--out", str(tmp_path), *TINY, flag, value]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "report.json").exists()
