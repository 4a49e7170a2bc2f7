#!/usr/bin/env bash
# Issue 31: what a lean start costs. The SVD form trained from a start cut to at most the dense
# model's parameters (--lean-start 1) against the full-rank start, at equal epochs, from the same
# dense model, on two points of BENCHMARKS.md, one seed each:
#   ResNet-20 channel-wise 3x, the budget recipe, 4 SVD-training + 5 fine-tuning epochs (4.1);
#   the character GPT at 2x, the paper's recipe, 1 + 2 epochs (4.6).
# Resumable: run it again after a stop. Usage: bash benchmarks/lean_start.sh [RUNS] [ADAPTED_RESNET20]
# (the adapted ResNet-20 is what benchmarks/long_budget.sh makes first).
set -euo pipefail
runs=${1:-$HOME/runs/issue31}
adapted=${2:-$HOME/runs/issue29/adapt/adapted_dense.pt}
export SVDTRAIN_DATA=${SVDTRAIN_DATA:-../shared/data:../shared/models}
resnet=(--preset cpu-resnet20-channel-hoyer --checkpoint "$adapted" --target-reduction 3 --svd-epochs 4
        --finetune-epochs 5 --precision bf16 --compile true --channels-last true --methods budget --seeds 0 --resume)
svdtrain compare "${resnet[@]}" --out "$runs/resnet20-3x-full"
svdtrain compare "${resnet[@]}" --lean-start 1 --out "$runs/resnet20-3x-lean"
gpt_dense=$runs/gpt-dense/adapted_dense.pt
if [ ! -f "$gpt_dense" ]; then  # the preset's dense start (4 epochs from scratch), shared by both
  svdtrain start --preset cpu-gpt-hoyer --out "$runs/gpt-dense" $([ -d "$runs/gpt-dense" ] && echo --resume)
fi
gpt=(--preset cpu-gpt-hoyer --checkpoint "$gpt_dense" --target-reduction 2 --methods paper --seeds 0 --resume)
svdtrain compare "${gpt[@]}" --out "$runs/gpt-2x-full"
svdtrain compare "${gpt[@]}" --lean-start 1 --out "$runs/gpt-2x-lean"
