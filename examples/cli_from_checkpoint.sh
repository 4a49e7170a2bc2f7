#!/usr/bin/env bash
# The CLI from a pretrained CIFAR-10 checkpoint: the public ResNet-20 (../shared/models) adapted to
# the bundled JPEG copy of CIFAR-10, then SVD-trained, cut to half its MACs, fine-tuned, exported.
#
#   examples/cli_from_checkpoint.sh          # about an hour on 2 CPU cores (the presets say more)
#   examples/cli_from_checkpoint.sh --quick  # seconds: the smoke preset on scikit-learn's digits
#
# PYTHON picks the interpreter (default python); OUT the run folders (default runs/cli-example).
set -euo pipefail
python=${PYTHON:-python}
out=${OUT:-runs/cli-example}

if [[ "${1:-}" == "--quick" || ! -f ../shared/models/resnet20-12fca82f.th ]]; then
  # No checkpoint needed: a dense CNN is trained first, then the same stages run in seconds.
  "$python" -m svdtrain run --preset smoke --out "$out/smoke" --overwrite
  exit
fi

# 1. Adapt the pretrained checkpoint to the JPEG copy of CIFAR-10 (3 dense epochs):
#    writes $out/adapt/adapted_dense.pt.
"$python" -m svdtrain start --preset cpu-resnet20-adapt --out "$out/adapt"
# 2. Measure the cut to the target before training anything; it recommends a recipe.
"$python" -m svdtrain probe --preset cpu-resnet20-channel-hoyer --checkpoint "$out/adapt/adapted_dense.pt"
# 3. Decompose, SVD-train, prune to 2x fewer MACs, fine-tune, export, report (run.log, report.json).
"$python" -m svdtrain run --preset cpu-resnet20-channel-hoyer --checkpoint "$out/adapt/adapted_dense.pt" \
  --out "$out/channel-hoyer"
