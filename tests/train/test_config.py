import pytest

from svdtrain.train.config import RunConfig, load_preset, preset_names, resolve_config

PAPER = [n for n in preset_names() if n.startswith("paper-resnet")]


def test_every_paper_run_has_a_preset():
    expected = {f"paper-resnet{d}-{s}-{k}" for d in (20, 32, 56, 110) for s in ("channel", "spatial")
                for k in ("l1", "hoyer", "hoyer_square")}
    assert set(PAPER) == expected


@pytest.mark.parametrize("name", PAPER)
def test_paper_presets_use_the_official_schedule(name):
    config = resolve_config(name)
    assert (config.optimizer, config.lr, config.weight_decay, config.batch_size) == ("adam", 1e-3, 0.0, 100)
    assert (config.start_epochs, config.svd_epochs, config.finetune_epochs) == (164, 164, 164)
    assert config.lr_milestones == [81, 122] and config.lr_gamma == 0.1 and config.augment
    assert config.ortho_weight == 1.0 and config.init == "random"
    assert config.sparsity_weight > 0 and 0 < config.energy < 1


def test_precedence_defaults_preset_file_flags(tmp_path):
    config_file = tmp_path / "exp.yaml"
    config_file.write_text("svd_epochs: 7\nlr: 0.01\n")
    config = resolve_config("smoke", config_file, {"lr": 0.5})
    assert config.svd_epochs == 7 and config.lr == 0.5 and config.model == "digits_cnn"
    assert load_preset("smoke")["svd_epochs"] != 7


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"epochz": 3}, "unknown config key"),
        ({"lr": "fast"}, "expects float"),
        ({"sparsity_weight": -0.1}, "sparsity_weight must be >= 0"),
        ({"energy": 1.0}, r"energy must be a number in \[0, 1\)"),
        ({"scheme": "tucker"}, "unknown scheme"),
        ({"model": "vgg"}, "unknown model 'vgg'"),
        ({"device": "gpu"}, "device must be auto, cpu, mps, cuda or cuda:N"),
        ({"mean": [0.5, 0.5]}, "mean and std need one value per channel"),
        ({"target_reduction": 0.5}, "target_reduction must be > 1"),
    ],
)
def test_bad_values_are_named(overrides, message):
    with pytest.raises(ValueError, match=message):
        resolve_config("smoke", None, overrides)


def test_unknown_preset_and_bad_yaml(tmp_path):
    with pytest.raises(ValueError, match="unknown preset 'nope'"):
        resolve_config("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: [unclosed\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        resolve_config(None, bad)


def test_svd_start_needs_a_checkpoint_or_dense_epochs():
    with pytest.raises(ValueError, match="give checkpoint: PATH, or start_epochs > 0"):
        RunConfig(dataset="digits", init="svd", start_epochs=0)
    assert RunConfig(dataset="digits", init="svd", start_epochs=3).checkpoint == ""  # dense from scratch first


def test_every_preset_resolves():
    for name in preset_names():
        config = resolve_config(name)
        assert (config.task == "language_modeling") == name.startswith(("smoke-lm", "cpu-char", "cpu-gpt", "paper-lstm"))


def test_language_model_presets_are_what_they_say():
    lstm = resolve_config("paper-lstm-wikitext2")
    assert (lstm.model, lstm.dataset, lstm.sparsity_kind, lstm.sparsity_weight, lstm.energy) == (
        "paper_lstm", "text_word", "hoyer", 0.01, 0.1)
    for name in ("cpu-char-lstm-hoyer", "cpu-gpt-hoyer"):
        config = resolve_config(name)
        assert config.init == "svd" and not config.checkpoint and config.start_epochs > 0  # dense from scratch
