"""How the pruning policy changes accuracy right after pruning, on one SVD-trained model.

For each MACs reduction, prunes copies of the same model (a run folder's svd_train.pt)
with one energy threshold for all layers (the paper's rule) and with greedy per-layer
ranks (MacsBudget), each evaluated without BatchNorm recalibration and after it on plain or on
augmented training batches. No fine-tuning: this isolates the policy.

    python benchmarks/prune_policies.py --run runs/cpu/channel-hoyer   # run with --recipe paper (section 3)
    python benchmarks/prune_policies.py --quick     # builds a seconds-long digits run first
"""

from __future__ import annotations

import argparse
import copy
import tempfile
from datetime import date
from pathlib import Path

import svdtrain
from svdtrain.cli import main as svdtrain_main
from svdtrain.io import atomic_write_json
from svdtrain.train.checkpoint import load_checkpoint
from svdtrain.pipeline.config import RunConfig, to_flags
from svdtrain.pipeline.experiment import Experiment
from svdtrain.train.loop import recalibrate_batchnorm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="a run folder holding start.pt and svd_train.pt")
    parser.add_argument("--reductions", default="2,3", help="MACs reduction factors")
    parser.add_argument("--calibration-batches", type=int, default=50)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json")
    args = parser.parse_args()
    if args.quick:
        args.run = Path(tempfile.mkdtemp()) / "run"
        smoke = ["--preset", "smoke", "--start-epochs", "1", "--svd-epochs", "1", "--finetune-epochs", "1"]
        assert svdtrain_main(["start", "--out", str(args.run), *smoke]) == 0
        assert svdtrain_main(["svd-train", "--out", str(args.run)]) == 0
    if args.run is None:
        parser.error("give --run FOLDER or --quick")

    config = RunConfig.from_flags(to_flags(load_checkpoint(args.run / "svd_train.pt")["config"], "svd_train.pt"))
    experiment = Experiment(config, args.run, resume=True, log=lambda line: None)
    model, _ = experiment.load_stage("svd_train")
    example, baseline_macs = experiment.data.example, load_checkpoint(args.run / "start.pt")["baseline"]["macs"]
    rows = []
    for factor in (float(f) for f in args.reductions.split(",")):
        budget = int(baseline_macs / factor)
        policies = {
            "one energy threshold": lambda m: svdtrain.prune(
                m, svdtrain.MacsBudget(example, max_macs=budget, allocation="energy")
            ),
            "greedy ranks": lambda m: svdtrain.prune(m, svdtrain.MacsBudget(example, max_macs=budget)),
        }
        for name, apply in policies.items():
            pruned = copy.deepcopy(model)
            apply(pruned)
            before = experiment.evaluation(pruned)["accuracy"]
            recalibrated = {}
            for augment in (False, True):
                calibrated = copy.deepcopy(pruned)
                recalibrate_batchnorm(calibrated, experiment.data.train.batches(augment), args.calibration_batches)
                recalibrated[augment] = experiment.evaluation(calibrated)["accuracy"]
            rows.append({"reduction": factor, "policy": name, "macs": svdtrain.count_macs(pruned, example),
                         "accuracy": before, "accuracy_bn_plain": recalibrated[False],
                         "accuracy_bn_augmented": recalibrated[True]})  # fmt: skip
    print(f"{'MACs cut':>8} {'policy':<22} {'MACs':>12} {'no BN':>7} {'BN plain':>9} {'BN augm.':>9}")
    for r in rows:
        print(f"{r['reduction']:>7g}x {r['policy']:<22} {r['macs']:>12,} {r['accuracy']:>7.4f} "
              f"{r['accuracy_bn_plain']:>9.4f} {r['accuracy_bn_augmented']:>9.4f}")  # fmt: skip
    if args.json:
        atomic_write_json(args.json, {"benchmark": "prune_policies", "date": date.today().isoformat(),
                                      "run": str(args.run), "baseline_macs": baseline_macs, "rows": rows})  # fmt: skip


if __name__ == "__main__":
    main()
