#!/usr/bin/env bash
# Everything a lent GPU is for (issue 21), as one device call: the device's time is 15 minutes,
# start-up included, so nothing here waits on anything it does not need.
#   1. benchmarks/train_throughput.py on CUDA: dense and SVD form, eager / compiled / CUDA graphs,
#      fp32 / bf16, channels_last (the GPU rows of BENCHMARKS.md section 2)
#   2. the paper's ResNet-20 schedule, channel- and spatial-wise, side by side on the one GPU
#      (svdtrain parallel), compiled with CUDA graphs, bf16, channels_last
#   3. benchmarks/deploy_speed.py on CUDA (issue 23): ResNet-50, a TransformerEncoder, GPT-2 prefill
#      and decode, dense against compact at 2x and 3x fewer MACs, eager and compiled, bf16 first (the
#      goals' rows) then fp32, ResNet-50 channel- and spatial-wise (which conv pair form cuDNN runs
#      faster) (cut off after DEPLOY_SECONDS, default 240; rows print and save as they finish)
# Run from the repository root, with the CIFAR-10 JPEG tarball copied to .data/ and carried:
#   mkdir -p .data && cp ../shared/data/cifar10-jpg.tar.gz .data/
#   bash benchmarks/gpu_session.sh                 # on the device: run(carry=[".data"], ...)
#   QUICK=1 DEVICE=cpu bash benchmarks/gpu_session.sh   # the same steps in seconds, to test it here
# EPOCHS (default 164, the paper's) sets each stage's epochs. The runs are cut off after RUN_SECONDS
# (default 420) so that every result comes back within one device call; each epoch is checkpointed,
# so a cut-off run continues with `svdtrain run ... --resume` on its returned folder. Results land
# under $OUT (or runs/gpu).
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src:${PYTHONPATH:-}"
OUT=${OUT:-runs/gpu}
DEVICE=${DEVICE:-cuda}
EPOCHS=${EPOCHS:-164}
DATA=${DATA:-.data/cifar10-jpg.tar.gz}
mkdir -p "$OUT"
python3 -c "import torch; print(torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA')" \
    | tee "$OUT/device.txt"

if [ -n "${QUICK:-}" ]; then
    THROUGHPUT=(--quick)
    RUN=(--preset smoke --start-epochs 1 --svd-epochs 1 --finetune-epochs 1 --train-limit 256 --test-limit 128)
    PRESETS=(smoke smoke)
else
    THROUGHPUT=(--models resnet20:100,resnet56:100 --rounds 5)
    RUN=(--data "$DATA" --dataset image_folder --start-epochs "$EPOCHS" --svd-epochs "$EPOCHS"
         --finetune-epochs "$EPOCHS" --compile true --compile-mode reduce-overhead --precision bf16
         --channels-last true)
    PRESETS=(paper-resnet20-channel-hoyer paper-resnet20-spatial-hoyer)
fi

start=$(date +%s)
python3 benchmarks/train_throughput.py --device "$DEVICE" "${THROUGHPUT[@]}" \
    --json "$OUT/train_throughput.json" > "$OUT/train_throughput.log" 2>&1
echo "throughput: exit $? after $(( $(date +%s) - start )) s" | tee -a "$OUT/times.txt"

start=$(date +%s)
commands=()
for index in "${!PRESETS[@]}"; do
    preset=${PRESETS[$index]}
    extra=()
    [ -n "${QUICK:-}" ] || extra=(--preset "$preset")
    commands+=("run ${RUN[*]} ${extra[*]} --device $DEVICE --out $OUT/run$index-$preset")
done
timeout --signal=INT "${RUN_SECONDS:-420}" python3 -m svdtrain parallel --logs "$OUT/logs" "${commands[@]}"
echo "paper schedule: exit $? after $(( $(date +%s) - start )) s" | tee -a "$OUT/times.txt"

start=$(date +%s)
if [ -n "${QUICK:-}" ]; then DEPLOY=(--quick); else DEPLOY=(--dtypes bf16,fp32 --batches 64,1 --schemes channel,spatial --prefill-batch 8 --new-tokens 128); fi
timeout --signal=INT "${DEPLOY_SECONDS:-240}" python3 benchmarks/deploy_speed.py --device "$DEVICE" "${DEPLOY[@]}" \
    --json "$OUT/deploy_speed.json" > "$OUT/deploy_speed.log" 2>&1
echo "deploy speed: exit $? after $(( $(date +%s) - start )) s" | tee -a "$OUT/times.txt"
