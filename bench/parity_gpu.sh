#!/usr/bin/env bash
# CPU vs CUDA parity results under bench/results/parity/ (run on a machine with one NVIDIA or AMD
# GPU and a CUDA/ROCm build of torch, e.g. inside the project's container):
#   - fingerprints of the tiny model: CPU fp32, CUDA fp32 (twice: must be bit-identical on one
#     device), CUDA bf16; compared CPU fp32 vs CUDA fp32 (tol 1e-4), CPU fp32 vs CUDA bf16
#     (tol 2e-2), and this machine's CUDA fp32 vs the CI machine's committed CPU fingerprint;
#   - short training runs (40 steps): CPU fp32 vs CUDA fp32 and CPU fp32 vs CUDA bf16.
# File names carry the GPU name; every JSON names its device, driver and software stack.
# Usage: PY=/path/to/python bench/parity_gpu.sh   (~5 min on an H100)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python}
OLMO=("$PY" -m olmo)
OUT=bench/results/parity
CFG=configs/tiny.yaml
FP=(--batches 2)
RUN=(--train.max_steps=40 --train.log_interval=1 --checkpoint.interval=1000 --train.eval_holdout_instances=0)
GPU=$("$PY" -c "import torch; assert torch.cuda.is_available(), 'no GPU'; print(torch.cuda.get_device_name(0).replace(' ', '-'))")
mkdir -p "$OUT"
V="$OUT/verdicts_$GPU.jsonl"
: > "$V"

compare() {  # compare NAME A B [options]: report to NAME.txt, one verdict line to $V
  local name=$1; shift
  "${OLMO[@]}" parity compare "$@" > "$OUT/$name.txt" || true
  "${OLMO[@]}" parity compare --json "$@" | sed "s/^{/{\"comparison\": \"$name\", /" >> "$V" || true
}

"${OLMO[@]}" parity fingerprint $CFG --out "$OUT/$GPU-host-cpu-fp32.json" --device cpu "${FP[@]}"
"${OLMO[@]}" parity fingerprint $CFG --out "$OUT/$GPU-cuda-fp32-a.json" --device cuda "${FP[@]}"
"${OLMO[@]}" parity fingerprint $CFG --out "$OUT/$GPU-cuda-fp32-b.json" --device cuda "${FP[@]}"
"${OLMO[@]}" parity fingerprint $CFG --out "$OUT/$GPU-cuda-bf16.json" --device cuda --dtype bf16 "${FP[@]}"

compare "${GPU}_cuda-fp32_vs_cuda-fp32" "$OUT/$GPU-cuda-fp32-a.json" "$OUT/$GPU-cuda-fp32-b.json" --require-bits
compare "${GPU}_cpu-fp32_vs_cuda-fp32" "$OUT/$GPU-host-cpu-fp32.json" "$OUT/$GPU-cuda-fp32-a.json"
compare "${GPU}_cpu-fp32_vs_cuda-bf16" "$OUT/$GPU-host-cpu-fp32.json" "$OUT/$GPU-cuda-bf16.json"
compare "${GPU}_ci-cpu-fp32_vs_cuda-fp32" "$OUT/cpu-fp32-a.json" "$OUT/$GPU-cuda-fp32-a.json"

# Short runs from identical CPU-made weights; the CPU run hides the GPU.
for r in cpu-fp32 cuda-fp32 cuda-bf16; do rm -rf "runs/parity/$GPU-$r"; done
CUDA_VISIBLE_DEVICES='' HIP_VISIBLE_DEVICES='' "${OLMO[@]}" train $CFG --run-dir "runs/parity/$GPU-cpu-fp32" "${RUN[@]}" --train.precision=fp32
"${OLMO[@]}" train $CFG --run-dir "runs/parity/$GPU-cuda-fp32" "${RUN[@]}" --train.precision=fp32
"${OLMO[@]}" train $CFG --run-dir "runs/parity/$GPU-cuda-bf16" "${RUN[@]}" --train.precision=bf16
for r in cpu-fp32 cuda-fp32 cuda-bf16; do
  cp "runs/parity/$GPU-$r/metrics.jsonl" "$OUT/run-$GPU-$r.metrics.jsonl"
done
for r in cuda-fp32 cuda-bf16; do
  name="run_${GPU}_cpu-fp32_vs_$r"
  "${OLMO[@]}" parity runs "runs/parity/$GPU-cpu-fp32" "runs/parity/$GPU-$r" --png "$OUT/$name.png" \
    > "$OUT/$name.txt" || true
  "${OLMO[@]}" parity runs "runs/parity/$GPU-cpu-fp32" "runs/parity/$GPU-$r" --json \
    | sed "s/^{/{\"comparison\": \"$name\", /" >> "$V" || true
done
cat "$V"
