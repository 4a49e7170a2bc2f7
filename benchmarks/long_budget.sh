#!/usr/bin/env bash
# Issue 29's long-budget protocol on the CPU: ResNet-20 channel-wise at 4x fewer MACs, 40 epochs
# for every method (SVD methods: 20 of SVD training + 20 of fine-tuning), from the adapted model.
# Resumable: run it again after a stop and every run continues where it was cut off.
#   bash benchmarks/long_budget.sh [RUNS_DIR] [SEEDS] [METHODS]
# Defaults: ~/runs/issue29, seed 0, all five methods. The second seed runs the best SVD method
# and the best truncation: bash benchmarks/long_budget.sh ~/runs/issue29 1 budget,truncation
set -euo pipefail
runs=${1:-$HOME/runs/issue29}
seeds=${2:-0}
methods=${3:-budget,paper,truncation,truncation-plain,dense}
export SVDTRAIN_DATA=${SVDTRAIN_DATA:-../shared/data:../shared/models}
adapted=$runs/adapt/adapted_dense.pt
if [ ! -f "$adapted" ]; then  # 3 dense epochs from the public pretrained ResNet-20 (~8 min)
  svdtrain start --preset cpu-resnet20-adapt --out "$runs/adapt" $([ -d "$runs/adapt" ] && echo --resume)
fi
# compiled + bf16 + channels_last measured fastest for the SVD step on this CPU (BENCHMARKS.md 4.7);
# --budget-cuts 12: the last cut after 60% of SVD training; in the 10,000-image screen (BENCHMARKS.md 4.7)
# the last cut at 40%, 60% and 100% ended within 0.7 points, and fewer cuts recompile the step less often.
svdtrain compare --preset cpu-resnet20-channel-hoyer --checkpoint "$adapted" --target-reduction 4 \
  --svd-epochs 20 --finetune-epochs 20 --precision bf16 --compile true --channels-last true \
  --methods "$methods" --budget-cuts 12 --seeds "$seeds" --out "$runs/long4x-s${seeds//,/_}" --resume
