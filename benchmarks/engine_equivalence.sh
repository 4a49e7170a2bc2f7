#!/usr/bin/env bash
# Issue 30: the pipeline on the one engine (SVDTraining) against the pipeline before it, side by
# side on the same machine: each configuration runs under both commits, and every value of the two
# report.json files is compared (timings aside). Usage: bash benchmarks/engine_equivalence.sh [OLD] [NEW]
set -euo pipefail
old=${1:-2e67e01} new=${2:-HEAD} out=${OUT:-$(mktemp -d)}
export SVDTRAIN_DATA=${SVDTRAIN_DATA:-../shared/data:../shared/models}
text=$(python -c "from svdtrain.data.locate import locate; print(locate('tinyshakespeare.txt', what='text'))" 2>/dev/null \
       || echo ../shared/data/tinyshakespeare.txt)
configs=(
  "cnn-budget|--preset smoke --recipe budget --target-reduction 2 --svd-epochs 3 --finetune-epochs 1 --train-limit 256 --test-limit 128"
  "cnn-tail|--preset smoke --budget-tail true --proximal true --sparsity-kind l1 --sparsity-weight 0.5 --target-reduction 2 --svd-epochs 2 --finetune-epochs 1 --train-limit 256 --test-limit 128"
  "cnn-multiple|--preset smoke --target-reduction 2 --rank-multiple 0 --svd-epochs 2 --finetune-epochs 1 --train-limit 256 --test-limit 128"
  "lm-budget|--preset smoke-lm --data $text --recipe budget --target-reduction 2 --train-limit 200 --test-limit 50"
  "lm-paper|--preset smoke-lm --data $text --target-reduction 1.5 --train-limit 200 --test-limit 50"
)
for commit in "$old" "$new"; do git worktree add -q --detach "$out/src-$commit" "$commit"; done
for entry in "${configs[@]}"; do
  name=${entry%%|*}; flags=${entry#*|}
  for commit in "$old" "$new"; do
    PYTHONPATH="$out/src-$commit/src" python -m svdtrain.cli run $flags --export-onnx false \
      --out "$out/$name-$commit" > "$out/$name-$commit.log"
  done
  python - "$out/$name-$old/report.json" "$out/$name-$new/report.json" "$name" <<'PY'
import json, sys
def flat(d, p=""):
    if isinstance(d, dict):
        return {k: v for key, value in d.items() for k, v in flat(value, f"{p}.{key}").items()}
    if isinstance(d, list):
        return {k: v for i, value in enumerate(d) for k, v in flat(value, f"{p}[{i}]").items()}
    return {p: d}
a, b = (flat(json.load(open(path))) for path in sys.argv[1:3])
differ = [k for k in a if "seconds" not in k and a[k] != b.get(k)]
print(f"{sys.argv[3]}: {len(differ)} of {len(a)} report values differ {differ[:5]}")
PY
done
for commit in "$old" "$new"; do git worktree remove --force "$out/src-$commit"; done
