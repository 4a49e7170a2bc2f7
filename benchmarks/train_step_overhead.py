"""Training-step time and peak memory of the full-rank SVD form against the dense model.

Variants, timed A B C A B C ... in one process so machine noise hits all alike:
  dense     the plain model: forward, backward, Adam step
  svd       decomposed (channel, SVD init) + orthogonality + Hoyer terms: each weight is
            rebuilt as U diag(s) Vh once per step (its parametrization, under
            parametrize.cached() as train_epoch runs it), then the module's own conv
  svd_pair  the same factors and regularizers, but each Conv2d/Linear forward replaced by
            the two thin ops on them (Vh as a k x k conv to r channels, then U diag(s) as a
            1x1 conv; Linear alike), gradients to U, s, Vh: what a module-swapping
            implementation runs every step, to show what rebuilding W saves at full rank
  svd_lazy4 svd, with both regularizers computed on one step in 4, weighted by 4 (lazy
            regularization, --regularize-every)
Each round runs --block consecutive steps of each variant (so a lazy variant's expensive
step is inside every timed block); reports median seconds per step and the ratio of
medians to dense. Memory, two ways:
  tensors   exact bytes a step needs at its peak (the end of the forward pass): parameters,
            their gradients and Adam's two moments (4 x parameter bytes), plus every tensor
            autograd saves for the backward pass (counted once per storage), regularizers
            included
  RSS       each variant runs a few steps in a fresh process of its own; its peak resident
            memory (ru_maxrss) minus the resident memory just before the first step; includes
            allocator caching and oneDNN workspaces, so it is noisier

    python benchmarks/train_step_overhead.py        # ResNet-20 and -56 at batch 128, ResNet-50 at 224px batch 8
    python benchmarks/train_step_overhead.py --models resnet20:128 --rounds 20
    python benchmarks/train_step_overhead.py --quick    # seconds, for the test suite
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

import svdtrain
from svdtrain.models import build_model
from svdtrain.surgery.timing import interleaved_medians
from svdtrain.train import Regularization

from _tensor_memory import training_tensor_bytes  # noqa: E402  (beside this script)
from _results import write_results  # noqa: E402  (beside this script)

VARIANTS = ("dense", "svd", "svd_pair", "svd_lazy4")


def regularization_of(variant: str) -> Regularization:
    if variant == "dense":
        return Regularization()
    return Regularization(1.0, 1e-3, "hoyer", every=4 if variant == "svd_lazy4" else 1)


def make_step(model, regularization: Regularization, batch: torch.Tensor, targets: torch.Tensor):
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)  # as the pipeline builds it
    terms = regularization.bind(model)  # the factors grouped once, as train_epoch groups them
    counter = iter(range(10**9))

    def step() -> None:
        regularize = terms is not None and next(counter) % regularization.every == 0
        with parametrize.cached():  # as train_epoch runs a step
            loss = F.cross_entropy(model(batch), targets) + (terms() if regularize else 0.0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def tensor_bytes(model_name: str, variant: str, batch_size: int) -> int:
    """4 x parameter bytes + bytes saved for backward by one forward (and the regularizers)."""
    model, batch, targets = build_parts(model_name, variant, batch_size)
    regularization = regularization_of(variant)
    return training_tensor_bytes(model, lambda: F.cross_entropy(model(batch), targets) + regularization.loss(model, 0))


def _pair_forward(handle: svdtrain.FactoredWeight):
    """The module's forward as two thin ops on U, s, Vh (channel view), differentiable in them."""
    module = handle.module
    if isinstance(module, nn.Conv2d):
        if handle.view != "channel" or module.padding_mode != "zeros" or isinstance(module.padding, str):
            raise ValueError(f"{handle.name}: only channel-view convs with numeric zero padding have a pair here")

        def forward(x: torch.Tensor) -> torch.Tensor:
            U, s, Vh = handle.factors
            r = s.shape[0]
            first = F.conv2d(x, Vh.reshape(r, module.in_channels, *module.kernel_size), None, module.stride,
                             module.padding, module.dilation)  # fmt: skip
            return F.conv2d(first, (U * s).reshape(module.out_channels, r, 1, 1), module.bias)

    elif isinstance(module, nn.Linear):

        def forward(x: torch.Tensor) -> torch.Tensor:
            U, s, Vh = handle.factors
            return F.linear(F.linear(x, Vh), U * s, module.bias)

    else:
        raise ValueError(f"{handle.name}: no pair forward for {type(module).__name__}")
    return forward


@torch.no_grad()
def force_pair_path(model: nn.Module, batch: torch.Tensor) -> None:
    """Run every factored Conv2d/Linear as its two thin ops; checks the output is unchanged."""
    was_training = model.training
    model.eval()
    reference = model(batch)
    for handle in svdtrain.factored_weights(model).values():
        handle.module.forward = _pair_forward(handle)
    torch.testing.assert_close(model(batch), reference, rtol=1e-4, atol=1e-4)
    model.train(was_training)


def build_parts(model_name: str, variant: str, batch_size: int):
    torch.manual_seed(0)
    model = build_model(model_name, 10)
    if variant != "dense":
        model = svdtrain.decompose(model, scheme="channel", init="svd")
    size = 224 if model_name.startswith("imagenet") else 32
    batch = torch.randn(batch_size, 3, size, size)
    if variant == "svd_pair":
        force_pair_path(model, batch)
    return model, batch, torch.randint(0, 10, (batch_size,))


def build(model_name: str, variant: str, batch_size: int):
    model, batch, targets = build_parts(model_name, variant, batch_size)
    return make_step(model, regularization_of(variant), batch, targets)


def _resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def measure_memory(model_name: str, variant: str, batch_size: int, steps: int = 3) -> None:
    """Child process: print the memory ``steps`` training steps add, in bytes, as JSON."""
    step = build(model_name, variant, batch_size)
    before = _resident_bytes()
    for _ in range(steps):
        step()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    print(json.dumps({"before": before, "peak": peak, "added": peak - before}))


def memory_of(model_name: str, variant: str, batch_size: int, steps: int) -> dict:
    command = [sys.executable, __file__, "--memory-child", f"{model_name}:{batch_size}:{variant}:{steps}"]
    result = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def time_steps(
    model_name: str, batch_size: int, variants: list[str], rounds: int, warmup: int, block: int
) -> dict[str, float]:
    steps = {variant: build(model_name, variant, batch_size) for variant in variants}

    def run_block(step):  # block steps in a row, so a lazy variant's costly step is in every block
        return lambda: [step() for _ in range(block)]

    medians = interleaved_medians([run_block(step) for step in steps.values()], rounds, warmup)
    return {name: median / block for name, median in zip(steps, medians)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="resnet20:128,resnet56:128,imagenet_resnet50:8",
                        help="model:batch pairs")  # fmt: skip
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--block", type=int, default=4, help="consecutive steps per variant per round")
    parser.add_argument("--memory-steps", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for the test suite")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        name, batch, variant, steps = args.memory_child.split(":")
        return measure_memory(name, variant, int(batch), int(steps))
    if args.quick:
        args.models, args.rounds, args.warmup, args.memory_steps, args.block = "resnet20:4", 2, 1, 1, 4

    variants = args.variants.split(",")
    rows = []
    print(f"{'model':<18} {'batch':>5} {'variant':<9} {'median s/step':>14} {'time ratio':>10} "
          f"{'tensors MiB':>11} {'ratio':>6} {'RSS MiB':>8} {'ratio':>6}")  # fmt: skip
    for spec in args.models.split(","):
        name, batch = spec.split(":")
        medians = time_steps(name, int(batch), variants, args.rounds, args.warmup, args.block)
        memory = {variant: memory_of(name, variant, int(batch), args.memory_steps) for variant in variants}
        tensors = {variant: tensor_bytes(name, variant, int(batch)) for variant in variants}
        for variant in variants:
            row = {"model": name, "batch_size": int(batch), "variant": variant,
                   "median_seconds": medians[variant], "time_ratio": medians[variant] / medians["dense"],
                   "added_bytes": memory[variant]["added"], "peak_bytes": memory[variant]["peak"],
                   "memory_ratio": memory[variant]["added"] / memory["dense"]["added"],
                   "tensor_bytes": tensors[variant], "tensor_ratio": tensors[variant] / tensors["dense"]}  # fmt: skip
            rows.append(row)
            print(f"{name:<18} {batch:>5} {variant:<9} {row['median_seconds']:>14.4f} {row['time_ratio']:>10.3f} "
                  f"{row['tensor_bytes'] / 2**20:>11.1f} {row['tensor_ratio']:>6.3f} "
                  f"{row['added_bytes'] / 2**20:>8.1f} {row['memory_ratio']:>6.3f}", flush=True)  # fmt: skip
    if args.json:
        write_results(args.json, "train_step_overhead", {
            "rounds": args.rounds, "rows": rows,
        })  # fmt: skip


if __name__ == "__main__":
    main()
