#!/usr/bin/env bash
# One training round of lic's hyperprior on a lent GPU machine (issue 21; docs/lic-training.md).
# Installs the carried compressai wheel, runs a smoke test (a broken start fails here, in seconds), times
# the training configurations side by side (scripts/lic-train-speed.py), then trains from INIT for
# TRAIN_SECONDS with the configuration that trains the most steps in that time, and writes the round's
# master (bench.lic.round) to $OUT. Back here: `python -m bench.lic.round assemble`, then scripts/lic-select.py.
# Expects (git-ignored, carried): .whl/ (compressai's cp312 wheel), carry/lic-train.zip
# (scripts/pack-lic-train.py); INIT defaults to carry/init.pt where present (a candidate that was not
# shipped, `assemble --init-out carry/init.pt`), else the shipped codecs/lic/hyperprior.pt.
# $OUT gets at most 7 files, each under 16 MiB: master-0.pt, master-1.pt, round.json, log.csv,
# speed.json, train.txt, smoke.txt. The whole script keeps within LIMIT seconds (default 590: run it
# with timeout_s 600); TRAIN_SECONDS is cut to fit, with 45 s to spare for writing the master.
# FLAGS="--bf16 --channels-last" (say) skips the speed comparison and trains with those flags.
# Usage: scripts/lic-gpu-round.sh TRAIN_SECONDS
# A CPU dry run of the whole script (seconds of training, full-size model from the shipped weights):
#   PY=/work/main/.venv/bin/python DEVICE=cpu OUT=/tmp/round-out EXTRA="--batch 2 --crop 64 --steps 6" \
#   SPEED="--configs eager-fp32,bf16,bf16+channels-last --batch 2 --crop 64 --steps 2 --warmup 1" \
#   scripts/lic-gpu-round.sh 20
set -uo pipefail
started=$SECONDS
budget=${1:-360}
limit=${LIMIT:-590}
out=${OUT:-/tmp/lic-round-out}
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}
PACK=${PACK:-carry/lic-train.zip}
INIT=${INIT:-$([ -f carry/init.pt ] && echo carry/init.pt || echo codecs/lic/hyperprior.pt)}
LR=${LR:-1e-4}
WARMUP=${WARMUP:-500}
mkdir -p "$out"
[ -f "$PACK" ] || { echo "no training pack at $PACK: run scripts/pack-lic-train.py TRAIN_FOLDER $PACK here first"; exit 1; }
if [ "$DEVICE" = cuda ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
  nvidia-smi -L
fi
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=4
read -ra extra <<< "${EXTRA:-}"
read -ra speed <<< "${SPEED:-}"
common=(--data "$PACK" --init "$INIT" --device "$DEVICE" --threads 4 --lr "$LR" --warmup "$WARMUP")
echo "round from $INIT on $PACK (sha256 $(sha256sum "$PACK" | cut -c1-16)), lr $LR, warm-up $WARMUP steps"

# 1. smoke test: 20 steps on the real data from the real init (eager: the flags are picked next)
timeout 90 $PY -m bench.lic.train "${common[@]}" --steps 20 --out /tmp/lic-smoke "${extra[@]}" > "$out/smoke.txt" 2>&1
smoke=$?
tail -c 400 "$out/smoke.txt"; echo
[ "$smoke" = 0 ] && [ -f /tmp/lic-smoke/round.json ] || { echo "smoke test failed (exit $smoke)"; exit 1; }

# 2. the training configurations side by side, and the pick's flags (FLAGS="--bf16 ..." skips this)
if [ -n "${FLAGS+set}" ]; then
  flags=$FLAGS
else
  timeout 240 $PY scripts/lic-train-speed.py --data "$PACK" --device "$DEVICE" --budget "$budget" \
    --json "$out/speed.json" "${speed[@]}" 2>&1 | grep -v Warning
  flags=$($PY -c 'import json, sys; print(" ".join(json.load(open(sys.argv[1]))["pick"]["flags"]))' "$out/speed.json" 2>/dev/null) \
    || { flags=""; echo "no speed comparison: training eager fp32"; }
fi

# 3. the round, cut to what is left of LIMIT
left=$((limit - (SECONDS - started) - 45))
[ "$left" -lt 30 ] && { echo "only $left s left of $limit s: no time to train"; exit 1; }
[ "$left" -lt "$budget" ] && { echo "training $left s, not $budget s: that is what is left of $limit s"; budget=$left; }
read -ra picked <<< "$flags"
echo "training ${budget} s with: ${flags:-no flags}"
$PY -m bench.lic.train "${common[@]}" --steps 1000000 --time-budget "$budget" --out /tmp/lic-round \
  "${picked[@]}" "${extra[@]}" > "$out/train.txt" 2>&1 || { tail -c 2000 "$out/train.txt"; echo "training failed"; exit 1; }
cp /tmp/lic-round/master-*.pt /tmp/lic-round/round.json /tmp/lic-round/log.csv "$out/"

# 4. summary, and what comes back
$PY - "$out" <<'PY'
import csv, json, sys
from pathlib import Path
out = Path(sys.argv[1])
record = json.loads((out / "round.json").read_text())
last = record["training"]["rounds"][-1]
rows = [r for r in csv.DictReader((out / "log.csv").open()) if r["kind"] == "train"]
flags = [f for f in ("bf16", "channels_last", "compile") if last[f]]
print(f"round {len(record['training']['rounds'])}: {last['steps']} steps in {last['seconds']:.0f} s "
      f"({last['steps_per_s']:.1f} steps/s) on {last['device']}, torch {last['torch']}, {', '.join(flags) or 'eager fp32'}")
if rows:
    print(f"last logged step {rows[-1]['step']}: loss {rows[-1]['loss']}, bpp {rows[-1]['bpp']}, psnr {rows[-1]['psnr']} dB")
files = sorted(out.iterdir())
print(", ".join(f"{p.name} {p.stat().st_size / 2**20:.2f} MiB" for p in files))
big = [p.name for p in files if p.stat().st_size >= 16 * 2**20]
if len(files) > 8 or big:
    print(f"WARNING: {len(files)} files in OUT (at most 8 come back); over 16 MiB: {big}")
PY
