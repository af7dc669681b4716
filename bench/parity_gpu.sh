#!/usr/bin/env bash
# CPU vs CUDA parity results under bench/results/parity/ (part `parity` of bench/gpu_all.sh; runs
# on a machine with one NVIDIA or AMD GPU and a CUDA/ROCm build of torch):
#   - fingerprints of the tiny model: CPU fp32, CUDA fp32 (twice: must be bit-identical on one
#     device), CUDA bf16; compared CPU fp32 vs CUDA fp32 (tol 1e-4), CPU fp32 vs CUDA bf16
#     (tol 2e-2), and this machine's CUDA fp32 vs the CI machine's committed CPU fingerprint;
#   - short training runs (40 steps): CPU fp32 vs CUDA fp32 and CPU fp32 vs CUDA bf16.
# File names carry the GPU name; every JSON names its device, driver and software stack; one
# verdict line per comparison in verdicts_<GPU>.jsonl. Exit 1 when any verdict is not PASS.
# Usage: [PY=python] bench/parity_gpu.sh   (~2-3 min on an H100)
#   DEVICE=cpu (gpu_all.sh --cpu): the device side runs on the CPU too (checks the plumbing);
#   PARITY_OUT=DIR (default bench/results/parity), RUNS=DIR, STEPS=N; arguments KEY=VALUE are
#   config overrides for every fingerprint and run (a smaller model; the comparison with the
#   committed fingerprint is then skipped).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python}
DEVICE=${DEVICE:-cuda}
OLMO=("$PY" -m olmo)
PDIR=${PARITY_OUT:-bench/results/parity}
RUNS=${RUNS:-runs/parity}
CFG=configs/tiny.yaml
FP=(--batches 2)
RUN=(--train.max_steps="${STEPS:-40}" --train.log_interval=1 --checkpoint.interval=1000
  --train.eval_holdout_instances=0 --train.eval_interval=0 --wandb.mode=disabled)
for o in "$@"; do FP+=(-o "$o"); RUN+=("--$o"); done
if [ "$DEVICE" = cpu ]; then
  TAG=cpu-fallback
else
  TAG=$("$PY" -c "import torch; assert torch.cuda.is_available(), 'no GPU'; print(torch.cuda.get_device_name(0).replace(' ', '-'))")
fi
D=$DEVICE
mkdir -p "$PDIR"
V="$PDIR/verdicts_$TAG.jsonl"
: > "$V"

compare() {  # compare NAME A B [options]: report to NAME.txt, one verdict line to $V
  local name=$1; shift
  "${OLMO[@]}" parity compare "$@" > "$PDIR/$name.txt" || true
  "${OLMO[@]}" parity compare --json "$@" | sed "s/^{/{\"comparison\": \"$name\", /" >> "$V" || true
}

CUDA_VISIBLE_DEVICES='' HIP_VISIBLE_DEVICES='' \
  "${OLMO[@]}" parity fingerprint $CFG --out "$PDIR/$TAG-host-cpu-fp32.json" --device cpu "${FP[@]}"
"${OLMO[@]}" parity fingerprint $CFG --out "$PDIR/$TAG-$D-fp32-a.json" --device "$D" "${FP[@]}"
"${OLMO[@]}" parity fingerprint $CFG --out "$PDIR/$TAG-$D-fp32-b.json" --device "$D" "${FP[@]}"
"${OLMO[@]}" parity fingerprint $CFG --out "$PDIR/$TAG-$D-bf16.json" --device "$D" --dtype bf16 "${FP[@]}"

compare "${TAG}_$D-fp32-a_vs_$D-fp32-b" "$PDIR/$TAG-$D-fp32-a.json" "$PDIR/$TAG-$D-fp32-b.json" --require-bits
compare "${TAG}_cpu-fp32_vs_$D-fp32" "$PDIR/$TAG-host-cpu-fp32.json" "$PDIR/$TAG-$D-fp32-a.json"
compare "${TAG}_cpu-fp32_vs_$D-bf16" "$PDIR/$TAG-host-cpu-fp32.json" "$PDIR/$TAG-$D-bf16.json"
if [ $# -eq 0 ]; then  # the committed CI fingerprint is of the unmodified config
  compare "${TAG}_ci-cpu-fp32_vs_$D-fp32" bench/results/parity/cpu-fp32-a.json "$PDIR/$TAG-$D-fp32-a.json"
fi

# Short runs from identical CPU-made weights; the CPU run hides the GPU.
for r in host-cpu-fp32 "$D-fp32" "$D-bf16"; do rm -rf "${RUNS:?}/$TAG-$r"; done
CUDA_VISIBLE_DEVICES='' HIP_VISIBLE_DEVICES='' \
  "${OLMO[@]}" train $CFG --run-dir "$RUNS/$TAG-host-cpu-fp32" "${RUN[@]}" --train.precision=fp32
"${OLMO[@]}" train $CFG --run-dir "$RUNS/$TAG-$D-fp32" "${RUN[@]}" --train.precision=fp32
"${OLMO[@]}" train $CFG --run-dir "$RUNS/$TAG-$D-bf16" "${RUN[@]}" --train.precision=bf16
for r in host-cpu-fp32 "$D-fp32" "$D-bf16"; do
  cp "$RUNS/$TAG-$r/metrics.jsonl" "$PDIR/run-$TAG-$r.metrics.jsonl"
done
for r in "$D-fp32" "$D-bf16"; do
  name="run_${TAG}_cpu-fp32_vs_$r"
  "${OLMO[@]}" parity runs "$RUNS/$TAG-host-cpu-fp32" "$RUNS/$TAG-$r" --png "$PDIR/$name.png" \
    > "$PDIR/$name.txt" || true
  "${OLMO[@]}" parity runs "$RUNS/$TAG-host-cpu-fp32" "$RUNS/$TAG-$r" --json \
    | sed "s/^{/{\"comparison\": \"$name\", /" >> "$V" || true
done
"$PY" - "$V" <<'EOF'
import json, sys
lines = [json.loads(x) for x in open(sys.argv[1]) if x.strip()]
for v in lines:
    print(f"{v['verdict']:5} {v['comparison']}  (max rel diff {v.get('max_rel_diff', v.get('max_abs_delta'))})")
bad = [v["comparison"] for v in lines if v["verdict"] != "PASS"]
if bad or len(lines) < 5:
    sys.exit(f"parity: not PASS: {bad or 'missing verdicts'}")
EOF
