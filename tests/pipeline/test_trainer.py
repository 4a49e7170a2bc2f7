"""StageTrainer pieces: optimizer groups across pruning and older checkpoints."""

import torch
from torch import nn

import svdtrain
from svdtrain.train.checkpoint import ranks_of
from svdtrain.pipeline.trainer import _upgraded
from svdtrain.train.optimizer import optimizer_follows


def _model():
    torch.manual_seed(0)
    return svdtrain.decompose(nn.Sequential(nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 3)))


def test_pruning_to_the_same_ranks_keeps_the_parameters():
    model = _model()
    before = [id(p) for p in model.parameters()]
    svdtrain.prune(model, svdtrain.Ranks(ranks_of(model)))
    assert [id(p) for p in model.parameters()] == before


def test_an_optimizer_following_a_cut_keeps_the_state_of_parameters_that_stayed():
    model = _model()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.randn(4, 6)).sum().backward()
    optimizer.step()
    states = {id(p): optimizer.state[p] for p in model.parameters()}
    with optimizer_follows(model, optimizer):
        svdtrain.prune(model, svdtrain.Ranks({"0.weight": 2}))
    kept = [p for p in model.parameters() if id(p) in states]
    assert kept and all(optimizer.state[p] is states[id(p)] for p in kept)
    assert svdtrain.factored_weights(model)["0.weight"].s not in optimizer.state  # replaced: starts fresh
    assert len(optimizer.state) == len(kept)  # the replaced factors' old state is gone


def test_an_optimizer_saved_with_two_groups_loads_into_three():
    from svdtrain.pipeline.config import resolve_config
    from svdtrain.pipeline.trainer import StageTrainer

    model = _model()
    factors = {id(p) for h in svdtrain.factored_weights(model).values() for p in h.factors}
    legacy = torch.optim.Adam([{"params": [p for p in model.parameters() if id(p) not in factors]},
                               {"params": [p for p in model.parameters() if id(p) in factors]}], lr=0.1)  # fmt: skip
    model(torch.randn(4, 6)).sum().backward()
    legacy.step()
    trainer = StageTrainer(resolve_config("smoke"), None, None, torch.device("cpu"), None, resume=True, log=print)
    current = trainer.optimizer(model, 0.1)
    assert len(current.param_groups) == 3
    current.load_state_dict(_upgraded(legacy.state_dict(), model))
    for p in model.parameters():
        torch.testing.assert_close(current.state[p]["exp_avg"], legacy.state[p]["exp_avg"])


class _Crash(Exception):
    pass


def test_a_crash_at_any_point_of_a_checkpoint_save_leaves_a_good_checkpoint(tmp_path, monkeypatch):
    from svdtrain.train import checkpoint as module

    path = tmp_path / "stage.ckpt.pt"
    module.save_checkpoint(path, {"epoch": 1}, keep_previous=True)
    module.save_checkpoint(path, {"epoch": 2}, keep_previous=True)
    real = {name: getattr(module, name) for name in ("atomic_write", "atomic_write_text")}
    real_replace = module.os.replace
    for crash_at in range(5):  # before the 1st, 2nd, ... file operation of the third save
        work = tmp_path / f"crash{crash_at}"
        work.mkdir()
        for file in tmp_path.glob("stage.ckpt*"):
            (work / file.name).write_bytes(file.read_bytes())
        calls = {"n": 0}

        def counted(function):
            def wrapper(*args, **kwargs):
                if calls["n"] == crash_at:
                    raise _Crash
                calls["n"] += 1
                return function(*args, **kwargs)
            return wrapper

        monkeypatch.setattr(module, "atomic_write", counted(real["atomic_write"]))
        monkeypatch.setattr(module, "atomic_write_text", counted(real["atomic_write_text"]))
        monkeypatch.setattr(module.os, "replace", counted(real_replace))
        try:
            module.save_checkpoint(work / "stage.ckpt.pt", {"epoch": 3}, keep_previous=True)
        except _Crash:
            pass
        monkeypatch.setattr(module.os, "replace", real_replace)
        state = module.load_latest_good(work / "stage.ckpt.pt", log=lambda line: None)
        assert state is not None and state["epoch"] in (2, 3), crash_at


def test_unwrapped_sees_through_compile():
    from svdtrain.train.distributed import unwrapped

    model = nn.Linear(2, 2)
    assert unwrapped(torch.compile(model)) is model
