"""Bad input found by probing the CLI and the API as a new user would: each is one clear line."""

import contextlib
import json
import os
import resource
import signal
import subprocess
import sys

import pytest
import torch
from torch import nn

import svdtrain
from svdtrain.cli import main


def test_a_config_nested_thousands_deep_is_one_line(tmp_path, capsys):
    config = tmp_path / "deep.yaml"
    config.write_text("optim:\n  lr_milestones: " + "[" * 5000 + "]" * 5000 + "\n")
    assert main(["run", "--config", str(config), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"svdtrain run: error: {config} nests too deep to be a config (lists or mappings thousands of levels deep)"
    assert not (tmp_path / "run").exists()


def test_a_model_on_the_meta_device_is_refused_by_name():
    with torch.device("meta"):
        model = nn.Sequential(nn.Linear(8, 4))
    with pytest.raises(ValueError, match=r"weight '0.weight' is on the meta device and has no values to factor"):
        svdtrain.decompose(model)
    assert not svdtrain.factored_weights(model)


def test_cli_warnings_are_one_line_without_source():
    code = ("import warnings; from svdtrain.cli import main; main(['presets', 'smoke']); "
            "warnings.warn('svdtrain.decompose left 1 weight(s) dense:\\n  embed.weight (embedding)')")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert done.stderr == "svdtrain: warning: svdtrain.decompose left 1 weight(s) dense:   embed.weight (embedding)\n"


@pytest.mark.parametrize(("flag", "value"), [("--lr", "inf"), ("--sparsity-weight", "nan"), ("--lr", "-inf")])
def test_a_non_finite_number_is_named_as_such(tmp_path, capsys, flag, value):
    assert main(["run", "--preset", "smoke", f"{flag}={value}", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(f"must be a finite number, got {value!r}") and len(err.splitlines()) == 1


def test_a_config_of_many_unknown_keys_names_ten_quickly(tmp_path, capsys):
    config = tmp_path / "many.yaml"
    config.write_text("".join(f"key{i}: 1\n" for i in range(20_000)))
    assert main(["run", "--config", str(config), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and len(err) < 1_000
    assert "key9" in err and "key10," not in err and "and 19,990 more" in err


def test_a_full_disk_names_the_file_and_leaves_the_old_one(tmp_path, monkeypatch):
    from svdtrain import io

    target = tmp_path / "report.json"
    target.write_text("old\n")

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(io.os, "fsync", full)
    with pytest.raises(OSError, match=f"cannot write {target}: No space left on device"):
        io.atomic_write_text(target, "new\n")
    assert target.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["report.json"]


@pytest.mark.parametrize("command", ["run", "start"])
def test_an_unreachable_target_is_refused_before_anything_trains(tmp_path, capsys, command):
    out = tmp_path / "run"
    assert main([command, "--preset", "smoke", "--target-reduction", "1e9", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "target_reduction 1e+09 is out of reach for digits_cnn: even rank 1 in every factored weight cuts" in err
    assert not any(out.glob("start*"))


def test_an_unreachable_speed_target_is_refused_before_anything_trains(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--preset", "smoke", "--target-speedup", "1000", "--energy", "0", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "a 1000x speedup is out of reach here: even the fastest ranks measure" in err
    assert not any(out.glob("start*"))


def _svdtrain_held(*argv: str) -> subprocess.CompletedProcess:
    """``svdtrain argv`` in a child held to 3 GiB and a minute: without the bounds under test, its
    input fills the memory or never ends, and would take the test run down with it."""

    def hold() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))

    return subprocess.run([sys.executable, "-m", "svdtrain", *argv], capture_output=True, text=True, timeout=60,
                          preexec_fn=hold)  # fmt: skip


SMOKE = ("run", "--preset", "smoke", "--svd-epochs", "1", "--finetune-epochs", "1")


def _billion_laughs(tmp_path, key):
    """Anchors a..i each a list of nine of the one before: ``*i`` stands for 9**9 items."""
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"{b}: &{b} [{', '.join(['*' + a] * 9)}]" for a, b in zip("abcdefgh", "bcdefghi")]
    config = tmp_path / "laughs.yaml"
    config.write_text("\n".join(lines) + f"\n{key}: *i\n")
    return config


@pytest.mark.parametrize("key", ["svd_train", "model"])
def test_a_yaml_alias_bomb_is_refused_at_its_first_alias(tmp_path, key):
    config = _billion_laughs(tmp_path, key)
    done = _svdtrain_held(*SMOKE, "--config", str(config), "--out", str(tmp_path / "run"))
    assert (done.returncode, done.stderr) == (2, f"svdtrain run: error: {config} uses a YAML alias (*a, line 2); "
                                                 "config files take none, as one can stand for a value of any size: "
                                                 "write the value out\n")  # fmt: skip


@pytest.mark.parametrize("argv", [
    (*SMOKE, "--config", "/dev/zero"),
    ("run", "--preset", "smoke", "--init", "svd", "--start-epochs", "0", "--checkpoint", "/dev/zero"),
], ids=["config", "checkpoint"])  # fmt: skip
def test_dev_zero_is_refused_as_a_file_not_read_until_memory_runs_out(tmp_path, argv):
    done = _svdtrain_held(*argv, "--out", str(tmp_path / "run"))
    what = "config file" if "--config" in argv else "checkpoint"
    assert done.returncode == 2
    last = done.stderr.splitlines()[-1]
    assert last == f"svdtrain run: error: {what} /dev/zero is a character device, not a regular file"


@contextlib.contextmanager
def _at_most_seconds(seconds: int):
    """Interrupt a call blocked for longer than ``seconds`` with TimeoutError."""

    def interrupt(signum, frame):
        raise TimeoutError(f"still blocked after {seconds} s")

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("kind", ["fifo", "folder", "too_large"])
def test_a_config_that_is_no_small_regular_file_is_one_line(tmp_path, capsys, kind):
    config = tmp_path / "config.yaml"
    if kind == "fifo":
        os.mkfifo(config)  # nobody writes: opening it to read waits for a writer
    elif kind == "folder":
        config.mkdir()
    else:
        with open(config, "wb") as f:
            f.truncate(5 << 20)
    with _at_most_seconds(20):  # reading a FIFO nobody writes to waits for ever
        assert main([*SMOKE, "--config", str(config), "--out", str(tmp_path / "run")]) == 2
    expected = {"fifo": "is a FIFO (named pipe), not a regular file", "folder": "is a directory, not a regular file",
                "too_large": "is too large: 5,242,880 bytes, at most 4,194,304"}[kind]  # fmt: skip
    assert capsys.readouterr().err == f"svdtrain run: error: config file {config} {expected}\n"


def test_an_error_shows_a_value_built_by_a_hostile_file_briefly():
    from svdtrain.bounds import brief

    laughs = ["lol"] * 9
    for _ in range(8):
        laughs = [laughs] * 9  # 9**9 items, as a YAML alias or pickle memo builds them
    assert brief(laughs) == "[[[...], [...], [...], [...], ...], [[...], [...], [...], [...], ...], [[...], [...], " \
                            "[...], [...], ...], [[...], [...], [...], [...], ...], ...]"  # fmt: skip
    assert brief("x" * 10**6).startswith("'xxx") and len(brief("x" * 10**6)) <= 200
    assert brief(10**5000) == "an int too long to show"


@pytest.mark.parametrize("flag", ["--start-epochs", "--svd-epochs", "--finetune-epochs"])
def test_an_epoch_count_past_any_real_run_is_refused(tmp_path, capsys, flag):
    out = tmp_path / "run"
    with _at_most_seconds(30):  # accepted, it would train for ever
        assert main(["run", "--preset", "smoke", flag, "99999999999999999999999", "--out", str(out)]) == 2
    name = flag.removeprefix("--").replace("-", "_")
    err = capsys.readouterr().err
    assert err == f"svdtrain run: error: {name} must be at most 100,000, got '99999999999999999999999'\n"
    assert not out.exists()


def test_counts_are_bounded_where_they_are_declared():
    from svdtrain.pipeline.config import resolve_config

    assert resolve_config("smoke", overrides={"svd_epochs": 100_000}).svd_train.epochs == 100_000
    with pytest.raises(ValueError, match=r"^batch_size must be at most 2,147,483,647, got 2147483648$"):
        resolve_config("smoke", overrides={"batch_size": 2**31})
    with pytest.raises(ValueError, match=r"^image_size must be at most 8,192, got 100000$"):
        resolve_config("smoke", overrides={"image_size": 100_000})


@pytest.mark.parametrize(("argv", "model"), [(["--preset", "smoke-lm", "--task", "masked_lm"], "tiny_gpt"),
                                             (["--preset", "smoke-mlm", "--model", "tiny_lstm"], "tiny_lstm")])
def test_a_model_that_does_not_serve_the_task_is_refused_before_anything_trains(tmp_path, capsys, argv, model):
    out = tmp_path / "run"
    assert main(["run", *argv, "--out", str(out)]) == 2
    assert capsys.readouterr().err == (f"svdtrain run: error: model {model!r} does not serve task masked_lm (it serves "
                                       "language_modeling): models for masked_lm are tiny_bert\n")
    assert not out.exists()


@pytest.mark.parametrize(("values", "error"), [
    ({"n_embd": -5}, "RuntimeError: Trying to create tensor with negative dimension -5: [256, -5]"),
    ({"n_embd": 6, "n_head": 4}, "ValueError: `embed_dim` must be divisible by num_heads"),
])  # fmt: skip
def test_a_hugging_face_config_that_builds_no_model_is_one_line_naming_it(tmp_path, capsys, values, error):
    pytest.importorskip("transformers")
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"model_type": "gpt2", "vocab_size": 256, "n_positions": 16, "n_embd": 16,
                                  "n_layer": 1, "n_head": 2, "bos_token_id": 0, "eos_token_id": 0,
                                  **values}))  # fmt: skip
    text = tmp_path / "corpus.txt"
    text.write_text("To be, or not to be, that is the question.\n" * 20)
    assert main(["run", "--preset", "smoke-lm", "--model", f"hf:{config}", "--data", str(text),
                 "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"svdtrain run: error: {config} does not give a causal LM transformers can build ({error}")
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize("label", [999, -1])
def test_cifar10_labels_outside_its_classes_are_one_line_before_anything_trains(tmp_path, capsys, label):
    import pickle

    import numpy as np

    from svdtrain.data.cifar10 import FOLDER, TEST_FILES, TRAIN_FILES

    (tmp_path / FOLDER).mkdir()
    for name in TRAIN_FILES + TEST_FILES:
        batch = {b"data": np.zeros((20, 3072), np.uint8), b"labels": [label if name == "data_batch_1" else 1] * 20}
        (tmp_path / FOLDER / name).write_bytes(pickle.dumps(batch))
    out = tmp_path / "run"
    assert main([*SMOKE, "--dataset", "cifar10", "--data", str(tmp_path), "--model", "resnet20", "--mean", "0.5,0.5,0.5",
                 "--std", "0.5,0.5,0.5", "--out", str(out)]) == 2  # fmt: skip
    batch = tmp_path / FOLDER / "data_batch_1"
    assert capsys.readouterr().err == (f"svdtrain run: error: {batch} has 20 label(s) outside the 10 classes 0..9, "
                                       f"the first {label} (example 0)\n")
    assert not any(out.glob("*.pt"))


@pytest.mark.parametrize("kind", ["deep", "fifo"])
def test_a_run_folders_config_json_that_is_no_small_json_file_is_one_line(tmp_path, capsys, kind):
    config = tmp_path / "config.json"
    if kind == "deep":
        config.write_text("[" * 100_000 + "]" * 100_000)
    else:
        os.mkfifo(config)
    with _at_most_seconds(20):
        assert main(["run", "--out", str(tmp_path)]) == 2
    expected = {"deep": f"{config} is not valid JSON: maximum recursion depth exceeded while decoding a JSON array "
                        "from a unicode string",
                "fifo": f"run config {config} is a FIFO (named pipe), not a regular file"}[kind]  # fmt: skip
    assert capsys.readouterr().err == f"svdtrain run: error: {expected}\n"
