"""``svdtrain run`` and the stage commands on the seconds-long digits preset."""

import json
import subprocess
import sys

import pytest
import torch

from svdtrain.cli import main

TINY = ["--preset", "smoke", "--start-epochs", "1", "--svd-epochs", "2", "--finetune-epochs", "1",
        "--train-limit", "320", "--test-limit", "200", "--lr-milestones", "1"]


def _run(out, *extra):
    return main(["run", "--out", str(out), *TINY, *extra])


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert _run(out, "--export-onnx", "true") == 0
    return out


def test_report_schema_and_files(finished):
    report = json.loads((finished / "report.json").read_text())
    for key in ("baseline", "compact"):
        assert set(report[key]) >= {"accuracy", "macs", "params"} and 0 <= report[key]["accuracy"] <= 1
    assert report["layers"] and all(1 <= l["rank"] <= l["full_rank"] for l in report["layers"])
    assert set(report["stages"]) == {"start", "svd_train", "prune", "finetune", "export"}
    assert all({"accuracy", "seconds"} <= set(s) for s in report["stages"].values())
    assert report["config"]["svd_train"]["epochs"] == 2 and report["config"]["model"] == "digits_cnn"
    for name in ("spectra.png", "ranks.png", "metrics/svd_train.csv", "export/model.torchscript.pt",
                 "export/model.pt2", "export/weights.pt", "export/spec.json"):
        assert (finished / name).stat().st_size > 0, name
    assert (finished / "metrics" / "svd_train.csv").read_text().count("\n") == 3  # header + 2 epochs
    assert (finished / "export" / "model.onnx").stat().st_size > 0
    for check in ("torchscript_max_abs_diff", "torch_export_max_abs_diff", "reload_max_abs_diff", "onnx_max_abs_diff"):
        assert report["export"][check] < 1e-4, check


def test_spec_is_compact_spec_plus_the_model_name(finished, tmp_path):
    import shutil

    from svdtrain.export import load_compact

    spec = json.loads((finished / "export" / "spec.json").read_text())
    assert (spec["format"], spec["version"], spec["model"], spec["num_classes"]) == ("svdtrain-compact", 2,
                                                                                     "digits_cnn", 10)
    report = json.loads((finished / "report.json").read_text())
    assert {l["name"]: l["rank"] for l in report["layers"]} == {n: w["rank"] for n, w in spec["weights"].items()}
    assert all(w["form"] in ("pair", "dense") and w["view"] in ("channel", "matrix") for w in spec["weights"].values())
    small = load_compact(finished / "export")
    assert not any(name.endswith("original0") for name in small.state_dict())  # plain torch layers only

    old = tmp_path / "old"
    shutil.copytree(finished / "export", old)
    (old / "spec.json").write_text(json.dumps({"format": "svdtrain-compact", "version": 1, "model": "digits_cnn",
                                               "num_classes": 10, "layers": {}}))  # fmt: skip
    with pytest.raises(ValueError, match=r"spec.json: not a svdtrain-compact v2 spec"):
        load_compact(old)
    (old / "spec.json").write_text(json.dumps({k: v for k, v in spec.items() if k != "model"}))
    with pytest.raises(ValueError, match="names no model zoo architecture"):
        load_compact(old)


def test_stage_file_from_before_weight_names_is_a_clear_error(tmp_path, capsys):
    assert main(["start", "--out", str(tmp_path), *TINY]) == 0
    record = torch.load(tmp_path / "start.pt", weights_only=True)
    record["ranks"] = {name.removesuffix(".weight"): rank for name, rank in record["ranks"].items()}
    torch.save(record, tmp_path / "start.pt")
    (tmp_path / "start.pt.sha256").unlink()  # older versions wrote no checksum
    assert main(["svd-train", "--out", str(tmp_path)]) == 2
    assert "a checkpoint from an older svdtrain" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("file", "load"),
    [("model.torchscript.pt", "torch.jit.load(sys.argv[1])"), ("model.pt2", "torch.export.load(sys.argv[1]).module()")],
)
def test_exports_run_without_svdtrain(finished, file, load):
    code = (
        f"import sys, torch; m = {load}; y = m(torch.randn(3, 1, 8, 8));"
        "assert y.shape == (3, 10); assert 'svdtrain' not in sys.modules; print('ok')"
    )
    result = subprocess.run([sys.executable, "-c", code, str(finished / "export" / file)],
                            capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "ok", result.stderr


def test_finished_run_is_refused_unless_overwrite(finished, capsys):
    before = (finished / "report.json").read_text()
    assert _run(finished) == 2
    err = capsys.readouterr().err.strip()
    assert "already holds a finished run" in err and len(err.splitlines()) == 1
    assert (finished / "report.json").read_text() == before


def test_resume_reaches_the_same_result(tmp_path, die_in_third_epoch, assert_same_final_model):
    reference = tmp_path / "reference"
    interrupted = tmp_path / "interrupted"
    assert _run(interrupted) == 130
    assert (interrupted / "svd_train.ckpt.pt").exists() and not (interrupted / "report.json").exists()
    assert _run(interrupted) == 2  # neither --resume nor --overwrite: the partial run is kept
    die_in_third_epoch()  # train normally from here on
    assert _run(interrupted, "--resume") == 0
    assert _run(reference) == 0
    assert_same_final_model(reference, interrupted)


def test_stages_run_one_by_one(tmp_path):
    out = str(tmp_path)
    assert main(["start", "--out", out, *TINY]) == 0
    for stage in ("svd-train", "prune", "finetune", "export", "report"):
        assert main([stage, "--out", out]) == 0, stage  # config comes from the run folder
    assert json.loads((tmp_path / "report.json").read_text())["compact"]["macs"] > 0


def test_stage_before_its_input_is_a_clear_error(tmp_path, capsys):
    assert main(["prune", "--out", str(tmp_path)]) == 2  # nothing here: not the default config's data error
    expected = f"svdtrain prune: error: {tmp_path} holds no run: run 'svdtrain start' or 'svdtrain run' there first"
    assert capsys.readouterr().err.strip() == expected
    assert main(["start", "--out", str(tmp_path), *TINY]) == 0
    assert main(["prune", "--out", str(tmp_path)]) == 2
    assert "run the 'svd_train' stage first" in capsys.readouterr().err


def test_a_run_stopped_by_its_input_leaves_the_folder_free(tmp_path, capsys):
    """A mistake found after config.json is written (a wrong data path) does not lock the folder:
    the corrected command needs neither --resume nor --overwrite."""
    assert _run(tmp_path, "--dataset", "image_folder", "--data", "/no/such/dir") == 2
    assert not (tmp_path / "config.json").exists()  # the config it wrote is gone with it
    assert _run(tmp_path, "--dataset", "image_folder", "--data", "/no/such/other") == 2
    assert "data not found: /no/such/other" in capsys.readouterr().err  # it got past the folder guard


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--preset", "nope"], "unknown preset 'nope'"),
        (["--sparsity-weight", "-1"], "sparsity_weight must be >= 0"),
        (["--energy", "2"], "energy must be a number in [0, 1)"),
        (["--model", "vgg"], "unknown model 'vgg'"),
        (["--dataset", "image_folder", "--data", "/no/such/dir"], "data not found: /no/such/dir"),
        (["--dataset", "cifar10", "--data", "/no/such/dir"], "CIFAR-10 not found under /no/such/dir"),
    ],
)
def test_bad_input_is_one_line(tmp_path, capsys, extra, message):
    assert _run(tmp_path / "out", *extra) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out" / "report.json").exists()


def test_unknown_config_key_in_file(tmp_path, capsys):
    config = tmp_path / "exp.yaml"
    config.write_text("sparsity_wieght: 0.1\n")
    assert main(["run", "--out", str(tmp_path / "out"), "--config", str(config)]) == 2
    assert "unknown config key(s) in" in capsys.readouterr().err


def test_mismatched_checkpoint_names_first_key(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    torch.save({"state_dict": {"module.conv9.weight": torch.zeros(1)}}, bad)
    assert _run(tmp_path / "out", "--init", "svd", "--checkpoint", str(bad)) == 2
    err = capsys.readouterr().err
    assert "does not match the model: missing key 'features.0.weight'" in err


def test_sweep_shares_stages_and_plots(tmp_path):
    assert main(["sweep", "--out", str(tmp_path), *TINY, "--sparsity-weights", "0.01",
                 "--energies", "0.01,0.2"]) == 0
    sweep = json.loads((tmp_path / "sweep.json").read_text())
    assert [p["energy"] for p in sweep["points"]] == [0.01, 0.2]
    assert sweep["points"][1]["macs"] <= sweep["points"][0]["macs"]
    assert (tmp_path / "accuracy_vs_macs.png").stat().st_size > 0


def test_weight_decay_spares_the_svd_factors(tmp_path):
    from svdtrain.pipeline.config import resolve_config
    from svdtrain.pipeline.experiment import Experiment

    import svdtrain

    config = resolve_config("smoke", None, {"weight_decay": 0.01, "optimizer": "sgd"})
    experiment = Experiment(config, tmp_path)
    model = svdtrain.decompose(experiment.dense_model())
    groups = experiment.trainer.optimizer(model, lr=0.1).param_groups
    factors = {id(p) for handle in svdtrain.factored_weights(model).values() for p in handle.factors}
    decayed = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    spared = {id(p) for g in groups if g["weight_decay"] == 0 for p in g["params"]}
    assert decayed and not decayed & factors and spared == factors
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_flag_with_bad_value_names_the_type(tmp_path, capsys):
    """A flag's text goes through the option's type as a config file's value does: one line, exit 2."""
    assert main(["run", "--out", str(tmp_path), "--svd-epochs", "1.5"]) == 2
    err = capsys.readouterr().err
    assert err == "svdtrain run: error: config key 'svd_epochs' expects int, got '1.5'\n"


def test_threshold_rule_applies_when_set(tmp_path):
    assert _run(tmp_path, "--threshold", "1000") == 0  # every |s| is below: rank 1 everywhere
    report = json.loads((tmp_path / "report.json").read_text())
    assert all(layer["rank"] == 1 for layer in report["layers"])


@pytest.mark.parametrize("target", ["--target-reduction", "--target-speedup"])
def test_sweep_rejects_a_target_before_touching_the_folder(tmp_path, capsys, target):
    (tmp_path / "sweep.json").write_text("{}")
    code = main(["sweep", "--out", str(tmp_path), *TINY, target, "2", "--overwrite",
                 "--sparsity-weights", "0.01", "--energies", "0.01"])
    assert code == 2 and "which a target would override: set --target-reduction 0" in capsys.readouterr().err
    assert (tmp_path / "sweep.json").read_text() == "{}"


def test_resume_accepts_a_run_saved_before_newer_config_fields(tmp_path, capsys):
    assert main(["start", "--out", str(tmp_path), *TINY]) == 0
    saved = json.loads((tmp_path / "config.json").read_text())
    del saved["finetune"]["distill_weight"], saved["prune"]["rank_multiple"]  # as written by an older svdtrain
    (tmp_path / "config.json").write_text(json.dumps(saved))
    assert _run(tmp_path, "--resume", "--svd-epochs", "3") == 2  # a real change is still refused
    assert "changed: svd_epochs" in capsys.readouterr().err
    assert _run(tmp_path, "--resume") == 0


def test_target_speedup_prunes_and_exports_by_measured_time(tmp_path, monkeypatch):
    import svdtrain
    from svdtrain.surgery import latency, timing

    modes = set()

    def clock(modules, inputs, rounds=5, warmup=2, compiled=False):  # deterministic: MACs plus a launch cost per op
        modes.add(compiled)
        ops = lambda m: sum(isinstance(x, (torch.nn.Conv2d, torch.nn.Linear)) for x in m.modules())  # noqa: E731
        return [svdtrain.count_macs(m, inputs) + 20_000 * ops(m) for m in modules]

    monkeypatch.setattr(latency, "median_seconds", clock)
    monkeypatch.setattr(timing, "median_seconds", clock)
    out = tmp_path / "speed"
    assert _run(out, "--target-speedup", "1.5", "--speed-batch-size", "4", "--rank-multiple", "4",
                "--speed-compiled", "true") == 0  # fmt: skip
    assert modes == {True}  # the policy's and the export's timings, each compiled as asked
    report = json.loads((out / "report.json").read_text())
    assert any(layer["rank"] < layer["full_rank"] for layer in report["layers"])
    assert all(layer["rank"] == layer["full_rank"] or layer["rank"] % 4 == 0 for layer in report["layers"])
    assert report["compact"]["macs"] < report["baseline"]["macs"]


@pytest.mark.parametrize("extra, message", [
    (["--target-speedup", "0.5"], "target_speedup must be > 1"),
    (["--target-speedup", "2", "--target-reduction", "2"], "not both"),
])  # fmt: skip
def test_bad_speed_target_is_one_line(tmp_path, capsys, extra, message):
    assert _run(tmp_path / "out", *extra) == 2
    assert message in capsys.readouterr().err


def test_help_groups_flags_by_section_each_with_a_line(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = capsys.readouterr().out
    for title in ("data:", "start:", "optim:", "svd_train:", "prune:", "finetune:", "export:", "run:"):
        assert title in text, title
    assert "--sparsity-kind {l1,hoyer,hoyer_square}" in text and "sparsity term on s" in text and "(default: hoyer)" in text
    flat = " ".join(text.split())  # argparse wraps the help
    assert "(default: none; whiten in the budget and truncation recipes)" in flat  # --calibration
    assert "(default: 164; 0 in the truncation recipe)" in flat  # --svd-epochs


def test_presets_lists_every_preset_and_each_recipe_with_its_values(capsys, monkeypatch, tmp_path):
    from svdtrain.pipeline.config import OPTIONS, RECIPES, preset_names, preset_notes, recipe_values

    monkeypatch.setenv("SVDTRAIN_DATA", "/nowhere")
    monkeypatch.setenv("HOME", str(tmp_path))  # no cache folder holds the data either
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    for name in preset_names():  # its description, then its model, data and expected time
        notes, facts = preset_notes(name), lines[lines.index(f"  {name}: {preset_notes(name).description}") + 1]
        assert facts.startswith("    model ") and "; data " in facts and facts.endswith(f"; {notes.time}")
    assert "    model char_lstm; data tinyshakespeare.txt (text_char, not found); 15 min on 2 CPU cores" in lines
    assert ("    model resnet20; data cifar10 (cifar10, downloaded if missing); GPU, about 1 h (estimated)" in lines)
    assert "    first: svdtrain start --preset cpu-resnet20-adapt --out runs/cpu/adapt" in lines
    assert "folders in $SVDTRAIN_DATA (/nowhere), else from ~/.cache/svdtrain/data;" in out
    for name in RECIPES:
        line = next(line for line in out.splitlines() if line.startswith(f"  {name}: "))
        sets = out.splitlines()[out.splitlines().index(line) + 1]
        assert sets.startswith("    sets: ") and all(f".{OPTIONS[flag].name}: " in sets for flag in recipe_values(name))
    assert "svd_train.epochs: 0" in out and "svd_train.gradual: true" in out
    assert main(["presets", "cpu-gpt-hoyer"]) == 0
    shown = capsys.readouterr().out
    assert shown.startswith("# A nanoGPT-sized character GPT") and "svd_train:" in shown
    assert main(["presets", "truncation"]) == 0
    assert "epochs: 0" in capsys.readouterr().out


def test_resume_reads_a_flat_config_json_from_an_older_svdtrain(tmp_path):
    from svdtrain.pipeline.config import RunConfig, to_flags

    assert main(["start", "--out", str(tmp_path), *TINY]) == 0
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved.pop("provenance")["sources"]["svd_epochs"] == "the command line"  # where each value came from
    flat = {**RunConfig.from_flags(to_flags(saved, "config.json")).flat(), "version": 1}
    (tmp_path / "config.json").write_text(json.dumps(flat))
    assert _run(tmp_path, "--resume") == 0
    assert json.loads((tmp_path / "report.json").read_text())["config"]["version"] == 2


def test_activation_aware_truncation_in_the_pipeline(tmp_path, capsys):
    assert _run(tmp_path, "--svd-epochs", "0", "--target-reduction", "2", "--calibration", "whiten",
                "--calibration-batches", "2") == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["macs_reduction"] >= 2 and report["config"]["prune"]["calibration"] == "whiten"
    out = capsys.readouterr().out
    assert "whiten calibration of" in out
    assert out.startswith("recipe paper: ")  # a target chooses no recipe: the options as set


def test_calibration_with_a_threshold_is_refused(tmp_path, capsys):
    assert _run(tmp_path, "--threshold", "0.5", "--calibration", "scale") == 2
    assert "with calibration use energy or a target" in capsys.readouterr().err


LEVERS = ["--target-reduction", "1.5", "--gradual", "true", "--macs-weighted", "true", "--s-lr-scale", "3",
          "--distill-weight", "0.5", "--distill", "true", "--budget-tail", "true", "--proximal", "true"]


def test_gradual_pruning_resumes_to_the_same_result(tmp_path, die_in_third_epoch, assert_same_final_model):
    """Dies in the second SVD-training epoch, after the first one pruned: resume must rebuild
    the pruned shapes before loading the checkpoint."""
    interrupted, reference = tmp_path / "interrupted", tmp_path / "reference"
    assert _run(interrupted, *LEVERS) == 130
    die_in_third_epoch()
    assert _run(interrupted, *LEVERS, "--resume") == 0
    assert _run(reference, *LEVERS) == 0
    assert_same_final_model(reference, interrupted)
    svd_trained = torch.load(reference / "svd_train.pt", weights_only=True)
    start = torch.load(reference / "start.pt", weights_only=True)
    assert sum(svd_trained["ranks"].values()) < sum(start["ranks"].values())  # pruned during SVD training
    report = json.loads((reference / "report.json").read_text())
    assert report["macs_reduction"] >= 1.5


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--gradual", "true"], "gradual pruning prunes towards target_reduction"),
        (["--budget-tail", "true"], "budget_tail aims at the values target_reduction drops"),
        (["--distill", "true"], "svd_train distill uses finetune's distill_weight"),
        (["--proximal", "true", "--sparsity-kind", "hoyer"], "proximal needs sparsity_kind l1"),
        (["--s-lr-scale", "0"], "s_lr_scale must be > 0"),
    ],
)
def test_lever_misuse_is_one_line(tmp_path, capsys, extra, message):
    assert _run(tmp_path, *extra) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_proximal_l1_in_the_pipeline(tmp_path):
    assert _run(tmp_path, "--sparsity-kind", "l1", "--sparsity-weight", "5", "--proximal", "true") == 0
    record = torch.load(tmp_path / "svd_train.pt", weights_only=True)
    assert any(0.0 in values for values in record["spectra"]["after"].values())  # exact zeros


def test_a_diverging_run_stops_naming_the_step_and_keeps_the_last_good_epoch(tmp_path, capsys):
    assert _run(tmp_path, "--start-epochs", "2", "--lr", "1e30", "--lr-milestones", "1", "--lr-gamma", "1") == 3
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "training diverged at step" in err and "start epoch" in err
    assert not (tmp_path / "report.json").exists()


def test_bf16_training_runs_end_to_end(tmp_path):
    assert _run(tmp_path, "--precision", "bf16") == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["config"]["optim"]["precision"] == "bf16" and 0 <= report["compact"]["accuracy"] <= 1


def test_a_run_resumes_with_the_recipe_it_started_with(tmp_path):
    """Options no source sets keep the run folder's values on --resume, so a run started before
    the budget recipe existed (here: with the paper's, then the defaults) continues unchanged."""
    target = ["--target-reduction", "1.5", "--energy", "0"]
    assert main(["start", "--out", str(tmp_path), *TINY, *target, "--recipe", "paper"]) == 0
    saved = json.loads((tmp_path / "config.json").read_text())
    saved["svd_train"].pop("recipe")  # as an older svdtrain wrote it
    (tmp_path / "config.json").write_text(json.dumps(saved))
    assert _run(tmp_path, *target, "--resume") == 0
    resumed = json.loads((tmp_path / "config.json").read_text())
    assert resumed["svd_train"]["gradual"] is False and resumed["prune"]["calibration"] == "none"
    assert _run(tmp_path, *target, "--gradual", "true", "--resume") == 2  # a change it names


def test_a_reader_that_leaves_early_ends_the_output_quietly():
    """``svdtrain presets NAME | head``: a closed pipe is the reader's choice, not an error to print."""
    child = subprocess.Popen([sys.executable, "-m", "svdtrain", "presets", "cpu-resnet20-channel-hoyer"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    child.stdout.close()  # before the child has imported torch, let alone printed
    stderr = child.stderr.read().decode()
    assert child.wait(timeout=120) == 141
    assert stderr == ""


def test_a_broken_pipe_that_is_not_stdout_is_still_an_error(monkeypatch, capsys):
    from svdtrain.cli import presets

    def breaks(args):
        raise BrokenPipeError(32, "Broken pipe (a data loader's worker)")

    monkeypatch.setattr(presets, "run", breaks)
    assert main(["presets"]) == 2
    assert capsys.readouterr().err == "svdtrain presets: error: [Errno 32] Broken pipe (a data loader's worker)\n"


def test_a_rank_multiple_left_to_measurement_is_chosen_once_and_logged(tmp_path, capsys):
    assert _run(tmp_path, "--target-reduction", "1.5", "--energy", "0", "--rank-multiple", "0") == 0
    out = capsys.readouterr().out
    chosen = int(out.split("prune: rank multiple ")[1].split()[0])
    assert out.count("measured fastest") == 1 and chosen in (1, 8, 16, 32, 64)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["config"]["prune"]["rank_multiple"] == 0  # the config keeps what was asked
    assert all(layer["rank"] % chosen == 0 or layer["rank"] == layer["full_rank"] for layer in report["layers"])


def test_print_config_shows_each_value_and_its_source_and_runs_nothing(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("svd_train: {recipe: budget}\nprune: {target_reduction: 2}\n")
    out = tmp_path / "run"
    assert main(["run", "--out", str(out), "--preset", "smoke", "--config", str(config), "--recipe", "paper",
                 "--lr", "0.01", "--print-config"]) == 0  # fmt: skip
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.startswith("  ")}
    assert lines["lr"].endswith("0.01  (the command line)")
    assert lines["target_reduction"].endswith(f"2.0  ({config})")
    assert lines["svd_epochs"].endswith("(preset smoke)") and lines["grad_clip"].endswith("(the default)")
    assert lines["gradual"].split()[1] == "false"  # budget, named by the file, was replaced by paper
    assert not out.exists()
