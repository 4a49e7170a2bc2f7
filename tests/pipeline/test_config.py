import pytest

from svdtrain.pipeline.config import (
    OPTIONS, RunConfig, config_record, load_preset, preset_names, recipe_overrides, recipe_values, resolve_config,
)  # fmt: skip

PAPER = [n for n in preset_names() if n.startswith("paper-resnet")]


def test_every_paper_run_has_a_preset():
    expected = {f"paper-resnet{d}-{s}-{k}" for d in (20, 32, 56, 110) for s in ("channel", "spatial")
                for k in ("l1", "hoyer", "hoyer_square")}
    assert set(PAPER) == expected


@pytest.mark.parametrize("name", PAPER)
def test_paper_presets_use_the_official_schedule(name):
    config = resolve_config(name)
    o = config.optim
    assert (o.optimizer, o.lr, o.weight_decay, config.data.batch_size) == ("adam", 1e-3, 0.0, 100)
    assert (config.start.epochs, config.svd_train.epochs, config.finetune.epochs) == (164, 164, 164)
    assert o.lr_milestones == [81, 122] and o.lr_gamma == 0.1 and config.data.augment
    assert config.svd_train.ortho_weight == 1.0 and config.start.init == "random"
    assert config.svd_train.sparsity_weight > 0 and 0 < config.prune.energy < 1


def test_precedence_defaults_preset_file_flags(tmp_path):
    config_file = tmp_path / "exp.yaml"
    config_file.write_text("svd_epochs: 7\nlr: 0.01\n")
    config = resolve_config("smoke", config_file, {"lr": 0.5})
    assert config.svd_train.epochs == 7 and config.optim.lr == 0.5 and config.model == "digits_cnn"
    assert load_preset("smoke")["svd_epochs"] != 7  # presets hold sections; load_preset gives flags


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
        RunConfig.from_flags({"dataset": "digits", "init": "svd", "start_epochs": 0})
    assert RunConfig.from_flags({"dataset": "digits", "init": "svd", "start_epochs": 3}).start.checkpoint == ""  # dense from scratch first


def test_every_preset_resolves():
    for name in preset_names():
        config = resolve_config(name)
        language = name.startswith(("smoke-lm", "cpu-char", "cpu-gpt", "paper-lstm"))
        assert config.task == ("language_modeling" if language else "masked_lm" if name == "smoke-mlm" else
                               "classification")  # fmt: skip


def test_the_task_is_explicit_and_must_fit_the_data_and_the_model():
    with pytest.raises(ValueError, match="task classification reads images; dataset 'text_char' does not fit it: set "
                                         "task \\(language_modeling, masked_lm\\)"):  # fmt: skip
        RunConfig.from_flags({"model": "tiny_gpt", "dataset": "text_char", "data": "x.txt"})
    with pytest.raises(ValueError, match=r"model 'digits_cnn' does not serve task language_modeling \(it serves "
                                         r"classification\): models for language_modeling are char_lstm, "):
        RunConfig.from_flags({"model": "digits_cnn", "dataset": "text_char", "data": "x.txt", "task": "language_modeling"})
    with pytest.raises(ValueError, match="unknown task 'segmentation'"):
        RunConfig.from_flags({"dataset": "digits", "task": "segmentation"})


@pytest.mark.parametrize(("model", "task", "serves"), [("tiny_gpt", "masked_lm", "language_modeling"),
                                                       ("tiny_lstm", "masked_lm", "language_modeling"),
                                                       ("hf:gpt2.json", "masked_lm", "language_modeling"),
                                                       ("tiny_bert", "language_modeling", "masked_lm")])  # fmt: skip
def test_a_model_serves_only_the_tasks_it_declares(model, task, serves):
    """A causal LM has no output for the mask token, and a BERT encoder sees the token it is to predict."""
    fits = "tiny_bert" if task == "masked_lm" else "char_lstm, paper_lstm, gpt_small, tiny_lstm, tiny_gpt, hf:PATH/.*"
    with pytest.raises(ValueError, match=f"^model '{model}' does not serve task {task} \\(it serves {serves}\\): "
                                         f"models for {task} are {fits}$"):  # fmt: skip
        RunConfig.from_flags({"model": model, "dataset": "text_char", "data": "x.txt", "task": task})


def test_language_model_presets_are_what_they_say():
    lstm = resolve_config("paper-lstm-wikitext2")
    assert (lstm.model, lstm.data.dataset, lstm.svd_train.sparsity_kind, lstm.svd_train.sparsity_weight,
            lstm.prune.energy) == (
        "paper_lstm", "text_word", "hoyer", 0.01, 0.1)
    for name in ("cpu-char-lstm-hoyer", "cpu-gpt-hoyer"):
        config = resolve_config(name)
        assert config.start.init == "svd" and not config.start.checkpoint and config.start.epochs > 0  # dense from scratch


def test_sections_and_flags_are_two_spellings_of_one_config(tmp_path):
    nested, flat, mixed = (tmp_path / name for name in ("nested.yaml", "flat.yaml", "mixed.yaml"))
    nested.write_text("optim:\n  lr: 0.01\nsvd_train:\n  epochs: 3\nfinetune:\n  lr: 0.002\ndata:\n  path: x.txt\n")
    flat.write_text("lr: 0.01\nsvd_epochs: 3\nfinetune_lr: 0.002\ndata: x.txt\n")
    mixed.write_text("lr: 0.01\nsvd_train: {epochs: 3}\nfinetune_lr: 0.002\ndata: {path: x.txt}\n")
    configs = [resolve_config("smoke", path) for path in (nested, flat, mixed)]
    assert configs[0] == configs[1] == configs[2]
    assert (configs[0].optim.lr, configs[0].finetune.lr, configs[0].svd_train.epochs) == (0.01, 0.002, 3)
    assert configs[0].data.path == "x.txt"


def test_unknown_key_inside_a_section_is_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim:\n  lrr: 0.01\n")
    message = r"unknown config key\(s\) in .*bad.yaml: optim.lrr \(did you mean optim.lr\?\)"
    with pytest.raises(ValueError, match=message):
        resolve_config("smoke", bad)


def test_unknown_keys_get_the_closest_name_where_one_is_close(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("traget_reduction: 3\nzzz: 1\n")
    with pytest.raises(ValueError) as error:
        resolve_config("smoke", bad)
    assert str(error.value).endswith(": traget_reduction (did you mean target_reduction?), zzz; "
                                     "`svdtrain run --help` lists the options")


def test_a_config_saved_flat_by_an_older_svdtrain_reads_the_same():
    from svdtrain.pipeline.config import to_flags

    config = resolve_config("cpu-gpt-hoyer")
    old_style = {**config.flat(), "version": 1}  # how config.json looked before sections
    assert RunConfig.from_flags(to_flags(old_style, "old config.json")) == config
    with pytest.raises(ValueError, match="config version 7 is not supported"):
        to_flags({**old_style, "version": 7}, "config.json")


def test_round_trip_through_the_saved_form():
    from svdtrain.pipeline.config import to_flags

    for name in preset_names():
        config = resolve_config(name)
        assert RunConfig.from_flags(to_flags(config.to_dict(), "config.json")) == config


def test_every_option_has_a_help_line_and_a_unique_flag():
    from svdtrain.pipeline.config import OPTIONS

    assert len(OPTIONS) > 40
    for flag, option in OPTIONS.items():
        assert option.help and "\n" not in option.help, flag


def test_updated_validates_the_change():
    config = resolve_config("smoke")
    assert config.updated(energy=0.2).prune.energy == 0.2 and config.prune.energy != 0.2
    with pytest.raises(ValueError, match="energy must be a number"):
        config.updated(energy=2.0)


def test_programmatic_values_are_type_checked_like_file_values():
    config = resolve_config("smoke")
    assert config.updated(augment="false").data.augment is False
    with pytest.raises(ValueError, match="'batch_size' expects int"):
        config.updated(batch_size=2.5)
    with pytest.raises(ValueError, match="'std' expects list"):
        config.updated(std=["a"])
    copy = config.updated(energy=0.1)
    copy.data.mean.append(9.0)
    assert config.data.mean == [0.5]  # lists are not shared between configs


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("optim: adam\n", "section 'optim' needs a mapping"),
        ("dataset: digits\ndata:\n  dataset: digits\n", "gives data.dataset twice"),
        ("version: true\n", "config version True is not supported"),
        ("seed: -1\n", "seed must be >= 0"),
        ("std: [.nan]\nmean: [0.5]\n", "mean and std need one value per channel"),
        ("lr_gamma: 0\n", "lr_gamma must be > 0"),
    ],
)
def test_file_mistakes_are_named(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        resolve_config("smoke", path)


def test_empty_sections_and_one_spelling_per_place(tmp_path):
    """In a section an option goes by its field name, at the top by its flag: a flag inside a
    section is an unknown key, with the field name suggested."""
    path = tmp_path / "c.yaml"
    path.write_text("prune:\n  # nothing yet\nstart:\n  epochs: 3\nfinetune_lr: 0.01\n")
    config = resolve_config("smoke", path)
    assert config.start.epochs == 3 and config.finetune.lr == 0.01
    path.write_text("start:\n  start_epochs: 3\n")
    with pytest.raises(ValueError, match=r"start.start_epochs \(did you mean start.epochs\?\)"):
        resolve_config("smoke", path)


def test_a_target_changes_nothing_else_and_one_lever_sets_that_lever_only():
    """No recipe is chosen for the user: the default recipe is paper, the options as set."""
    plain = resolve_config("smoke")
    target = resolve_config("smoke", overrides={"target_reduction": 2.0, "svd_epochs": 3})
    changed = {flag for flag in plain.flat() if plain.flat()[flag] != target.flat()[flag]}
    assert changed == {"target_reduction", "svd_epochs"} and target.svd_train.recipe == "paper"
    lever = resolve_config("smoke", overrides={"target_reduction": 2.0, "s_lr_scale": 2.0})
    assert {flag for flag in plain.flat() if plain.flat()[flag] != lever.flat()[flag]} == {"target_reduction",
                                                                                          "s_lr_scale"}
    for preset in ("cpu-resnet20-channel-hoyer", "cpu-resnet20-spatial-hoyer", "cpu-resnet56-channel-hoyer"):
        assert resolve_config(preset).svd_train.epochs > 0  # a preset named hoyer SVD-trains with hoyer


@pytest.mark.parametrize("name", ["budget", "truncation"])
def test_a_named_recipe_sets_its_visible_values_and_nothing_else(name):
    values = recipe_values(name)
    plain = resolve_config("smoke", overrides={"target_reduction": 2.0, "energy": 0.0})
    config = resolve_config("smoke", overrides={"target_reduction": 2.0, "energy": 0.0, "recipe": name})
    changed = {flag: config.flat()[flag] for flag in plain.flat() if plain.flat()[flag] != config.flat()[flag]}
    assert changed == {**values, "recipe": name}
    assert values and all(config.to_dict()[OPTIONS[f].section][OPTIONS[f].name] == v for f, v in values.items())


def test_a_value_set_explicitly_overrides_the_recipe_and_is_recorded_as_an_override(tmp_path):
    """Hydra's and OmegaConf's layering: the recipe is a base, an explicit value wins over it,
    from the source naming it or a later one; config.json records the override."""
    target = {"target_reduction": 2.0, "energy": 0.0}
    config = resolve_config("smoke", overrides={**target, "recipe": "budget", "s_lr_scale": 1.0})
    assert (config.svd_train.recipe, config.svd_train.s_lr_scale, config.svd_train.gradual) == ("budget", 1.0, True)
    assert recipe_overrides(config) == {"s_lr_scale": {"recipe": 10.0, "value": 1.0, "set by": "the command line"}}
    record = config_record(config)
    assert record["provenance"]["recipe_overrides"] == recipe_overrides(config)
    assert record["provenance"]["sources"]["gradual"] == "recipe budget (named by the command line)"
    named = tmp_path / "named.yaml"  # a recipe a file names, a value of it overridden by a later source
    named.write_text("svd_train: {recipe: budget}\nprune: {target_reduction: 2, energy: 0}\n")
    later = resolve_config("smoke", named, overrides={"calibration": "none"})
    assert (later.svd_train.recipe, later.prune.calibration, later.svd_train.gradual) == ("budget", "none", True)
    assert later.origin["gradual"] == f"recipe budget (named by {named})"


def test_a_recipe_named_by_a_later_source_replaces_the_earlier_one_as_a_whole(tmp_path):
    """A file naming budget, then --recipe paper: none of budget's values stays behind."""
    named = tmp_path / "named.yaml"
    named.write_text("svd_train: {recipe: budget, sparsity_weight: 0.01}\nprune: {target_reduction: 2, energy: 0}\n")
    config = resolve_config("smoke", named, overrides={"recipe": "paper"})
    plain = resolve_config("smoke", overrides={"target_reduction": 2.0, "energy": 0.0, "sparsity_weight": 0.01})
    assert config.flat() == plain.flat()  # the file's own values stay, budget's levers are gone
    truncated = resolve_config("smoke", named, overrides={"recipe": "truncation"})
    assert truncated.svd_train.epochs == 0 and not truncated.svd_train.gradual and not truncated.svd_train.distill
    with pytest.raises(ValueError, match="recipe truncation skips SVD training, but the command line sets "
                                         "svd_epochs 3"):  # fmt: skip
        resolve_config("smoke", overrides={**{"target_reduction": 2.0, "energy": 0.0}, "recipe": "truncation",
                                           "svd_epochs": 3})  # fmt: skip


def test_a_flag_at_the_top_of_a_config_file_reads_with_a_deprecation_naming_the_section(tmp_path):
    path = tmp_path / "flat.yaml"
    path.write_text("start_epochs: 3\n")
    with pytest.warns(DeprecationWarning, match=r"write start_epochs as start: \{epochs: \.\.\.\}"):
        assert resolve_config("smoke", path).start.epochs == 3


def test_a_recipe_named_later_overrides_an_earlier_source_as_any_value_does():
    config = resolve_config("cpu-resnet20-channel-hoyer", overrides={"recipe": "truncation"})  # preset: 4 SVD epochs
    assert (config.svd_train.epochs, config.finetune.epochs) == (0, 5)  # moved nowhere: fine-tuning as set
    with pytest.raises(ValueError, match="recipe budget cuts gradually towards target_reduction"):
        resolve_config("smoke", overrides={"recipe": "budget"})
    with pytest.raises(ValueError, match="recipe auto is gone"):
        resolve_config("smoke", overrides={"recipe": "auto"})


@pytest.mark.parametrize(("lever", "value"), [("gradual", True), ("macs_weighted", True), ("s_lr_scale", 3.0),
                                              ("distill", True), ("budget_tail", True), ("proximal", True)])
def test_the_truncation_recipe_refuses_an_svd_training_lever(lever, value):
    """The truncation recipe skips SVD training, so it would silently ignore the lever."""
    small = {"target_reduction": 2.0, "energy": 0.0, "sparsity_kind": "l1", "distill_weight": 0.9,
             "calibration": "whiten", "recipe": "truncation"}  # fmt: skip
    with pytest.raises(ValueError, match=f"recipe truncation skips SVD training, so {lever} would do nothing"):
        resolve_config("smoke", overrides={**small, lever: value})


def test_a_resumed_run_keeps_its_saved_values_and_its_recipe():
    started = resolve_config("smoke", overrides={"target_reduction": 2.0, "energy": 0.0, "recipe": "budget"})
    resumed = resolve_config(overrides={"target_reduction": 2.0}, saved=started.flat())
    assert resumed == started
    assert not resolve_config(overrides={"gradual": False}, saved=started.flat()).svd_train.gradual  # --resume refuses it


def test_a_threshold_with_a_target_is_refused_not_ignored():
    with pytest.raises(ValueError, match="threshold and a target both choose the ranks"):
        resolve_config("smoke", overrides={"threshold": 0.5, "target_reduction": 2.0})


def test_one_source_per_target_kind(tmp_path):
    """A run has one target; a later source's speed target does not drop an earlier MACs target in silence."""
    with pytest.raises(ValueError, match="set target_speedup or target_reduction, not both"):
        resolve_config("cpu-resnet56-channel-hoyer", overrides={"target_speedup": 1.5})
    config = resolve_config("cpu-resnet56-channel-hoyer", overrides={"target_speedup": 1.5, "target_reduction": 0})
    assert (config.prune.target_speedup, config.prune.target_reduction) == (1.5, 0.0)
