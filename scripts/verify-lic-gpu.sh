#!/usr/bin/env bash
# Issue 6's GPU check, run on a lent GPU machine: encode the Kodak images with lic on CUDA while TF32 is
# switched on elsewhere in the process, decode each there for the reference hashes, and write the folder
# to $OUT/gpu-streams. Back here: `bench verify --bitstreams gpu-streams` decodes them on this CPU under
# every variant and must report every image as a match.
# Expects (git-ignored, carried): .whl/ (compressai's cp312 wheel and click's), carry/kodak-all/ (the 24 PNGs).
# A CPU dry run: PY=.venv/bin/python DEVICE=cpu OUT=/tmp/gpu-out scripts/verify-lic-gpu.sh
set -euo pipefail
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}
out=${OUT:-/tmp/gpu-out}
if [ "$DEVICE" = cuda ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  nvidia-smi -L
fi
PYTHONPATH=/tmp/site:$PWD DEVICE=$DEVICE OUT=$out $PY - <<'PY'
import os
from pathlib import Path
from types import SimpleNamespace

import torch

torch.backends.cuda.matmul.allow_tf32 = True  # as a training loop elsewhere in the process would leave it
torch.backends.cudnn.allow_tf32 = True

from bench.catalog import load_catalog
from bench.verify import write_bitstreams

entry = load_catalog()["lic"].with_options({"device": os.environ["DEVICE"]})
images = [SimpleNamespace(name=p.name, path=p) for p in sorted(Path("carry/kodak-all").glob("*.png"))]
manifest = write_bitstreams([("lic", entry, (0.0, 3.0, 7.0))], images, Path(os.environ["OUT"]) / "gpu-streams")
failed = [item for item in manifest["items"] if "error" in item]
print(f"{len(manifest['items'])} bitstreams written on {manifest['encoder']}; {len(failed)} failed", failed[:3])
PY
