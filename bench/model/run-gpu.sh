#!/usr/bin/env bash
# The one command that trains nexusquant's reference model on the GPU machine (H100/H200, PyTorch 2.11,
# numpy; the tokenizer and safetensors writer are ours; no network, no Node). It ends in about 9 minutes:
#
#   bash bench/model/run-gpu.sh                      # -> $OUT/sotu-llama (models/sotu-llama without $OUT)
#   MODEL_OUT=$OUT/smoke bash bench/model/run-gpu.sh --smoke   # 1-minute pipeline check first
#
# Extra arguments go to train.py (see `python3 bench/model/train.py --help`). The corpus is read straight
# from bench/model/data/*.txt.xz with Python's lzma; nothing is unpacked.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="${MODEL_OUT:-${OUT:-$repo/models}/sotu-llama}"
mkdir -p "$out"

for f in sotu-train.txt.xz sotu-heldout.txt.xz manifest.json; do
  [[ -f "$here/data/$f" ]] || { echo "missing bench/model/data/$f: run 'npx tsx bench/model/prepare-corpus.ts' on a machine with Node" >&2; exit 1; }
done
python3 -c "import torch, numpy; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true

python3 -u "$here/train.py" --out "$out" "$@" 2>&1 | tee "$out/train.log"
echo "done: $(du -sh "$out" | cut -f1) in $out"
ls -l "$out"
