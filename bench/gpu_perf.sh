#!/usr/bin/env bash
# #8's GPU point in one go, for a session lent a GPU (results appended to
# bench/results/throughput.jsonl, each record naming its device):
#   - OLMo-1B, seq 4096, bf16, one GPU: `olmo bench` eager, then with torch.compile of blocks
#     (decides whether compile becomes the GPU default);
#   - the GPU test that the training step never waits for the host.
# Goal: >= 65,000 tokens/s (~57% MFU on an H100); OLMo-core published 55,000.
# Usage: PY=/path/to/python MICRO=2 bench/gpu_perf.sh   (~10 min on an H100)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python}
MICRO=${MICRO:-2}
OUT=bench/results/throughput.jsonl
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no GPU'"
"$PY" -m pytest -q tests/train/test_step.py
BENCH=("$PY" -m olmo bench configs/olmo-1b.yaml --data.seq_len=4096 --model.max_seq_len=4096
  --train.global_batch_size="$MICRO" --train.micro_batch_size="$MICRO" --out "$OUT")
"${BENCH[@]}"
"${BENCH[@]}" --distributed.compile=true --warmup=3
"$PY" bench/table.py
