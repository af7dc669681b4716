#!/usr/bin/env bash
# CPU-vs-CPU parity results under bench/results/parity/ (what this project's CI-class machine
# can measure): two fp32 fingerprints of the tiny model (must be bit-identical), a bf16-autocast
# one (measures bf16's distance, judged at the bf16 tolerance), two fault drills that must FAIL,
# and a short 1-rank vs 2-rank (FSDP over gloo) training-run comparison.
# Usage: [PY=python] bench/parity_cpu.sh   (from anywhere; ~5 min on 2 idle cores)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OLMO=("$PY" -m olmo)
OUT=bench/results/parity
CFG=configs/tiny.yaml
FP=(--batches 2)
RUN=(--train.max_steps=40 --train.log_interval=1 --checkpoint.interval=1000 --train.eval_holdout_instances=0)
mkdir -p "$OUT"
: > "$OUT/verdicts_cpu.jsonl"

# compare NAME A B [options]: the readable report to NAME.txt, the verdict line to the jsonl.
compare() {
  local name=$1; shift
  "${OLMO[@]}" parity compare "$@" > "$OUT/$name.txt" || true
  "${OLMO[@]}" parity compare --json "$@" | sed "s/^{/{\"comparison\": \"$name\", /" >> "$OUT/verdicts_cpu.jsonl" || true
}

"${OLMO[@]}" parity fingerprint $CFG --out "$OUT/cpu-fp32-a.json" "${FP[@]}"
"${OLMO[@]}" parity fingerprint $CFG --out "$OUT/cpu-fp32-b.json" "${FP[@]}"
"${OLMO[@]}" parity fingerprint $CFG --out "$OUT/cpu-bf16.json" --dtype bf16 "${FP[@]}"
"${OLMO[@]}" parity fingerprint $CFG --out "$OUT/drill-cpu-fp32-rope5000.json" -o model.rope_theta=5000 "${FP[@]}"
"${OLMO[@]}" parity fingerprint $CFG --out "$OUT/drill-cpu-fp32-bitflip.json" \
  --flip-bit layers.2.feed_forward.proj.weight,1000,22 "${FP[@]}"

compare cpu-fp32_vs_cpu-fp32 "$OUT/cpu-fp32-a.json" "$OUT/cpu-fp32-b.json" --require-bits
compare cpu-fp32_vs_cpu-bf16 "$OUT/cpu-fp32-a.json" "$OUT/cpu-bf16.json"
compare drill_rope5000 "$OUT/cpu-fp32-a.json" "$OUT/drill-cpu-fp32-rope5000.json"
compare drill_bitflip "$OUT/cpu-fp32-a.json" "$OUT/drill-cpu-fp32-bitflip.json"

# Short runs: the same config on 1 rank and on 2 gloo ranks (FSDP), then compared.
rm -rf runs/parity/cpu-1rank runs/parity/cpu-2rank
"${OLMO[@]}" train $CFG --run-dir runs/parity/cpu-1rank "${RUN[@]}"
OMP_NUM_THREADS=1 "$PY" -m torch.distributed.run --standalone --nproc_per_node=2 -m olmo train $CFG \
  --run-dir runs/parity/cpu-2rank "${RUN[@]}"
for r in cpu-1rank cpu-2rank; do cp runs/parity/$r/metrics.jsonl "$OUT/run-$r.metrics.jsonl"; done
"${OLMO[@]}" parity runs runs/parity/cpu-1rank runs/parity/cpu-2rank --png "$OUT/run_cpu-1rank_vs_cpu-2rank.png" \
  > "$OUT/run_cpu-1rank_vs_cpu-2rank.txt" || true
"${OLMO[@]}" parity runs runs/parity/cpu-1rank runs/parity/cpu-2rank --json \
  | sed 's/^{/{"comparison": "run_cpu-1rank_vs_cpu-2rank", /' >> "$OUT/verdicts_cpu.jsonl" || true
cat "$OUT/verdicts_cpu.jsonl"
