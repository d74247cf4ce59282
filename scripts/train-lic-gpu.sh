#!/usr/bin/env bash
# Train and export lic's two variable-rate models on a lent GPU machine in one go, then time them there.
# Expects (git-ignored, carried): .whl/ (compressai's cp312 wheel), carry/train/ (the training photos),
# carry/kodak/ (a few Kodak images, for timing only). Writes weights, logs and timings to $OUT.
# Usage: scripts/train-lic-gpu.sh TRAIN_SECONDS
# A CPU dry run of the whole script: PY=.venv/bin/python DEVICE=cpu EXTRA="--batch 2 --crop 64" scripts/train-lic-gpu.sh 20
set -uo pipefail
budget=${1:-300}
out=${OUT:-/tmp/lic-out}
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}
mkdir -p "$out"
if [ "$DEVICE" = cuda ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
  nvidia-smi -L
fi
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=4
read -ra extra <<< "${EXTRA:-}"
common=(--data carry/train --batch 16 --crop 256 --lr 2e-4 --threads 4 --val-every 2000 --checkpoint-every 2000
        --device "$DEVICE" "${extra[@]}")
# smoke test: a broken start fails here, in seconds
timeout 120 $PY -m bench.lic.train --architecture hyperprior --steps 30 --out /tmp/smoke "${common[@]}" \
  --val-every 30 --checkpoint-every 30 2>&1 | tail -3 || exit 1
[ -f /tmp/smoke/checkpoint.pt ] || { echo "smoke test failed"; exit 1; }
for arch in hyperprior factorized; do
  init=(); [ -n "${INIT:-}" ] && init=(--init "codecs/lic/$arch.pt")  # INIT=1: continue from the shipped weights
  $PY -m bench.lic.train --architecture "$arch" --steps 100000 --time-budget "$budget" --export "${init[@]}" \
    --out "/tmp/train-$arch" "${common[@]}" > "$out/train-$arch.txt" 2>&1 &
done
wait
for arch in hyperprior factorized; do
  tail -c 1500 "$out/train-$arch.txt"; cp "/tmp/train-$arch/log.csv" "$out/log-$arch.csv"
  cp "codecs/lic/$arch.pt" "$out/" || echo "no $arch weights"
done
$PY -m bench.lic.timing --device "$DEVICE" --repeat 5 carry/kodak/*.png > "$out/gpu-timing.json" 2> "$out/timing-err.txt"
tail -5 "$out/timing-err.txt"
$PY - "$out/gpu-timing.json" <<'PY'
import json, sys
for r in json.load(open(sys.argv[1])):
    print(r["architecture"], r["image"], r["level"], f'{r["bpp"]:.3f} bpp {r["psnr_rgb"]:.2f} dB enc {r["enc_mps"]:.2f} MP/s dec {r["dec_mps"]:.2f} MP/s')
PY
