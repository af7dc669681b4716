#!/usr/bin/env bash
# Everything a session lent a GPU runs, in one script: parts in priority order (the cheap ones
# that never ran anywhere first), each timed, its results kept on disk as it finishes
# (bench/results/, every record naming the device, torch and commit), a failing part reported
# loudly and the next one started anyway; exit 1 at the end when any part did not pass.
#
#   part       what                                                          ~H100   limit
#   step       GPU-only test: the training step never waits for the host     20 s   150 s
#              (tests/train/test_step.py under torch.cuda.set_sync_debug_mode("error"))
#   resume     configs/tiny.yaml on 1 GPU over NCCL, SIGKILLed at step 30,    60 s   240 s
#              resumed from step 20 == uninterrupted run: losses and weights bitwise with
#              deterministic kernels (bench/gpu_resume.py), else within 1e-2 where torch
#              names a nondeterministic op
#   energy     NVML: a 1500-step run's energy.json vs an independent counter  60 s   180 s
#              read before/after (<= 2%; bench/energy_nvml_check.py)
#   bench      `olmo bench` OLMo-1B, seq 4096, bf16, micro-batch 2: eager,   200 s   360 s
#              then blocks compiled (throughput.jsonl; goal >= 65,000 tok/s)
#   ---------- must-run part ends here: ~5 min with setup and wheels (an estimate: never run)
#   parity     CPU vs CUDA fingerprints + 40-step runs (bench/parity_gpu.sh)  150 s   300 s
#   olmo_core  OLMo-core's OLMo-1B-class model (olmo2_1B_v2) vs ours, same    90 s   300 s
#              GPU, same batch 2x4096, bf16 autocast (bench/bench_olmo_core.py)
#
# Device tool (the GPU machine has Python 3.12 + torch + transformers, no network): first, here,
# `bench/gpu_wheels.sh` (fills the git-ignored .whl/, ~30 MiB); then one call, carry [".whl"],
# timeout_s 600 (<commit>: `git rev-parse --short HEAD` of the tree sent; the copy may lack .git):
#   OLMO_GIT_COMMIT=<commit> OLMO_GPU_ALL_BUDGET_S=570 bash bench/gpu_all.sh
# Parts that no longer fit the budget are skipped and named (exit 1); with device time left, a
# second call runs just those, e.g. `... bash bench/gpu_all.sh parity olmo_core`. New results and
# the log are copied under $OUT after every part, so even a killed call returns the finished ones;
# then here: cp -r <files_at>/bench/results/. bench/results/ && .venv/bin/python bench/table.py --write
#
# bench/gpu_all.sh [--cpu] [PART...]       (no PART: all, in the order above)
#   --cpu (or OLMO_GPU_ALL_DEVICE=cpu): every part end to end on the CPU with small sizes, GPU
#   hidden; the CUDA-only test is reported skipped, NVML is a labelled stand-in (plumbing only).
#   Results then go to bench/results/cpu-fallback/, never over the GPU files. ~5 min on 2 cores.
# Environment: PY (python; default .venv/bin/python if present, else python3), OLMO_GPU_ALL_RESULTS
# (results dir), OLMO_GPU_ALL_WORK (run dirs, installed wheels, log; default runs/gpu_all-DEVICE),
# OLMO_GPU_ALL_BUDGET_S (seconds from the start: a part starts only if its ~H100 time is left, and
# is stopped when the budget runs out), OUT (new results and the log are copied there after every
# part), MICRO (part bench, default 2).
# Wheels: the missing packages of bench/gpu_wheels.txt are installed from .whl/ with
# `pip install --no-index --no-deps --target WORK/site-pyX.Y` (on PYTHONPATH, with the repo):
# the machine's own torch stays in use whether its python is a system, venv or conda one.
# shellcheck disable=SC2317  # the part_* functions run through `bash -c part_NAME` (exported)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
REPO=$PWD
ALL=(step resume energy bench parity olmo_core)
declare -A LIMIT=([step]=150 [resume]=240 [energy]=180 [bench]=360 [parity]=300 [olmo_core]=300)
declare -A NEED=([step]=20 [resume]=60 [energy]=60 [bench]=200 [parity]=150 [olmo_core]=90)  # ~H100

DEV=${OLMO_GPU_ALL_DEVICE:-cuda}
PARTS=()
for a in "$@"; do
  case $a in
    --cpu) DEV=cpu ;;
    -h | --help) sed -n '2,/^# shellcheck/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) [ -n "${LIMIT[$a]:-}" ] || { echo "gpu_all: unknown part '$a' (parts: ${ALL[*]})" >&2; exit 2; }
       PARTS+=("$a") ;;
  esac
done
[ ${#PARTS[@]} -gt 0 ] || PARTS=("${ALL[@]}")
if [ "$DEV" = cpu ]; then
  MODE=cpu-fallback
  RES=${OLMO_GPU_ALL_RESULTS:-bench/results/cpu-fallback}
  export CUDA_VISIBLE_DEVICES='' HIP_VISIBLE_DEVICES=''
else
  DEV=cuda MODE=gpu
  RES=${OLMO_GPU_ALL_RESULTS:-bench/results}
fi
WORK=${OLMO_GPU_ALL_WORK:-runs/gpu_all-$DEV}
mkdir -p "$RES" "$WORK"
RES=$(cd "$RES" && pwd) WORK=$(cd "$WORK" && pwd)
LOG=$WORK/gpu_all.log
STAMP=$WORK/.started
touch "$STAMP"
: > "$LOG"
if [ -z "${PY:-}" ]; then
  if [ -x .venv/bin/python ]; then PY=$REPO/.venv/bin/python; else PY=$(command -v python3 || command -v python); fi
fi
export PY DEV MODE RES WORK REPO
export OLMO_BENCH_RESULTS=$RES WANDB_MODE=disabled PYTHONUNBUFFERED=1
T0=$SECONDS

say() { echo "$*" | tee -a "$LOG"; }

sync_out() {  # new/changed results and the log → $OUT (the device tool brings back only those)
  [ -n "${OUT:-}" ] || return 0
  local rel=${RES#"$REPO"/}
  [ "$rel" != "$RES" ] || rel=results
  mkdir -p "$OUT/$rel"
  (cd "$RES" && find . -type f -newer "$STAMP" -print0 | xargs -0 -r cp --parents -t "$OUT/$rel")
  cp "$LOG" "$OUT/gpu_all-$DEV.log"
}

# ---- setup: python, GPU, wheels ---------------------------------------------------------------
say "== gpu_all ($MODE): parts ${PARTS[*]}; python $PY; results $RES; log $LOG"
PYVER=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])') || { say "gpu_all: no python at '$PY'"; exit 2; }
SITE=$WORK/site-py$PYVER
export PYTHONPATH=$REPO:$SITE${PYTHONPATH:+:$PYTHONPATH}
mkdir -p "$SITE"
mapfile -t WHEELS < <("$PY" - "$REPO" <<'EOF'
# the wheel files in .whl/ of the packages of bench/gpu_wheels.txt this python lacks
import re, sys
from importlib import metadata
from pathlib import Path
repo = Path(sys.argv[1])
for line in (repo / "bench/gpu_wheels.txt").read_text().splitlines():
    line = line.split("#")[0].strip()
    if not line:
        continue
    name, version = line.split("==")
    try:
        metadata.version(name)
        continue
    except metadata.PackageNotFoundError:
        pass
    stem = re.sub(r"[-_.]+", "_", name).lower() + "-" + version + "-"
    found = [w for w in sorted((repo / ".whl").glob("*.whl")) if w.name.lower().startswith(stem)]
    print(found[0] if found else f"MISSING {line}")
EOF
)
if [ ${#WHEELS[@]} -gt 0 ]; then
  say "installing ${#WHEELS[@]} missing packages into $SITE"
  absent=$(printf '%s\n' "${WHEELS[@]}" | grep '^MISSING' | tr '\n' ' ')
  [ -z "$absent" ] || say "!! gpu_all: no wheel in .whl/ for: $absent— run bench/gpu_wheels.sh and carry .whl; parts needing them will fail"
  mapfile -t FILES < <(printf '%s\n' "${WHEELS[@]}" | grep -v '^MISSING')
  if [ ${#FILES[@]} -gt 0 ] && ! "$PY" -m pip install -q --no-index --no-deps --target "$SITE" "${FILES[@]}" 2>&1 | tee -a "$LOG"; then
    say "!! gpu_all: pip could not install them together; one at a time (or unzipped without pip)"
    for f in "${FILES[@]}"; do
      "$PY" -m pip install -q --no-index --no-deps --target "$SITE" "$f" 2>&1 | tee -a "$LOG" \
        || "$PY" -m zipfile -e "$f" "$SITE" || say "!! gpu_all: could not install $f"
    done
  fi
fi
if [ "$DEV" = cuda ]; then
  "$PY" -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null \
    || { say "!! gpu_all: no CUDA GPU visible to $PY; --cpu runs the CPU fallback"; exit 2; }
  nvidia-smi -L 2>/dev/null | tee -a "$LOG"
fi
ENV_JSON=$("$PY" bench/common.py "$DEV") || { say "!! gpu_all: $PY cannot import torch or bench/common.py"; exit 2; }
say "environment: $ENV_JSON"
commit=${ENV_JSON#*\"git_commit\": \"}
case ${commit%%\"*} in
  unknown*) say "!! gpu_all: commit unknown (no .git here): set OLMO_GIT_COMMIT so every record names it" ;;
esac
say "setup: $((SECONDS - T0)) s"

# ---- parts (each runs in its own bash under `timeout`; cwd = repo) -----------------------------
note() { echo "$*" > "$WORK/note"; }
last() {  # last FILE PYTHON-EXPR: EXPR over the newest record r of FILE
  "$PY" -c 'import json, sys; r = json.loads(open(sys.argv[1]).read().splitlines()[-1]); print(eval(sys.argv[2]))' "$@"
}
export -f note last

part_step() {
  local log=$WORK/step.log
  "$PY" -m pytest -q -rA -p no:cacheprovider tests/train/test_step.py 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]} t=test_cuda_step_never_waits_for_the_host
  if [ "$DEV" = cuda ]; then
    grep -q "PASSED tests/train/test_step.py::$t" "$log" || { note "$t did not pass"; return 1; }
    note "$t PASSED; $(tail -1 "$log")"
  else
    note "$t SKIPPED (no GPU); the step's CPU tests: $(tail -1 "$log")"
  fi
  return "$rc"
}

part_resume() {
  "$PY" bench/gpu_resume.py --device "$DEV" --work "$WORK/resume"
  local rc=$?
  [ -s "$RES/gpu_resume.jsonl" ] && note "$(last "$RES/gpu_resume.jsonl" \
    '"passed %s (%s determinism): bitwise %s, loss max rel %s, weights max rel %s, nondeterministic ops %s" % (r["passed"], r["determinism"], r.get("bitwise"), r.get("loss_max_rel_diff"), r.get("weights_max_rel_l2_diff"), r["nondeterministic_ops"])')"
  return "$rc"
}

part_energy() {
  rm -rf "$WORK/energy"
  local args=(--run-dir "$WORK/energy" --steps 1500)  # GPU: ~30 s, so the edges weigh < 0.5%
  [ "$DEV" = cuda ] || args=(--run-dir "$WORK/energy" --fake-nvml --steps 20 model.d_model=64
    model.n_layers=2 model.n_heads=4 data.seq_len=32 train.global_batch_size=8 train.micro_batch_size=8)
  "$PY" bench/energy_nvml_check.py "${args[@]}"
  local rc=$?
  [ -s "$RES/energy_nvml_check.jsonl" ] && note "$(last "$RES/energy_nvml_check.jsonl" \
    '"%s: reported %.1f J vs reference %.1f J, %+.2f%% (goal 2%%)" % (r["nvml"], r["reported_j"], r["reference_j"], r["rel_error_pct"])')"
  return "$rc"
}

part_bench() {
  local bench
  if [ "$DEV" = cuda ]; then
    bench=("$PY" -m olmo bench configs/olmo-1b.yaml --data.seq_len=4096 --model.max_seq_len=4096
      --train.global_batch_size="${MICRO:-2}" --train.micro_batch_size="${MICRO:-2}")
  else
    bench=("$PY" -m olmo bench configs/tiny.yaml --data.seq_len=64 --train.global_batch_size=2
      --train.micro_batch_size=2 --windows 2 --steps-per-window 1)
  fi
  bench+=(--out "$RES/throughput.jsonl")
  "${bench[@]}" --warmup 2 || return 1
  note "eager $(last "$RES/throughput.jsonl" '"%.0f tok/s, MFU %.1f%%" % (r["tokens_per_s_per_device"], 100 * r["mfu"])')"
  "${bench[@]}" --distributed.compile=true --warmup 3 || return 1
  note "$(cat "$WORK/note"); compiled $(last "$RES/throughput.jsonl" '"%.0f tok/s, MFU %.1f%%" % (r["tokens_per_s_per_device"], 100 * r["mfu"])')"
}

part_parity() {
  local small=()
  [ "$DEV" = cuda ] || small=(model.d_model=64 model.n_layers=2 model.n_heads=4 data.seq_len=32
    train.global_batch_size=8 train.micro_batch_size=8)
  local steps=40
  [ "$DEV" = cuda ] || steps=8
  PARITY_OUT=$RES/parity RUNS=$WORK/parity DEVICE=$DEV STEPS=$steps \
    bash bench/parity_gpu.sh "${small[@]}" 2>&1 | tee "$WORK/parity.log"
  local rc=${PIPESTATUS[0]}
  note "$(grep -cE '^PASS ' "$WORK/parity.log") comparisons PASS$(grep -E '^(FAIL|parity:)' "$WORK/parity.log" | sed 's/^/; /' | tr -d '\n')"
  return "$rc"
}

part_olmo_core() {
  local args=(--device "$DEV" --dtype bf16)
  if [ "$DEV" = cuda ]; then args+=(--configs olmo2-1b --windows 7 --warmup 2)
  else args+=(--configs olmo2-30m --batch 2 --seq-len 64 --windows 2 --steps-per-window 1 --warmup 1); fi
  "$PY" bench/bench_olmo_core.py "${args[@]}" || return 1
  note "$(last "$RES/olmo_core.jsonl" '"%s %s: ours %.0f vs OLMo-core %.0f tok/s, ratio %s" % (r["config"], r["precision"], r["ours_tokens_per_s"], r["olmo_core_tokens_per_s"], r["ratio"])')"
}
export -f part_step part_resume part_energy part_bench part_parity part_olmo_core

declare -A STATUS SECS
FAILED=0
for p in "${PARTS[@]}"; do
  limit=${LIMIT[$p]} need=0
  if [ -n "${OLMO_GPU_ALL_BUDGET_S:-}" ]; then
    left=$((OLMO_GPU_ALL_BUDGET_S - (SECONDS - T0) - 10))
    [ "$left" -lt "$limit" ] && limit=$left
    need=${NEED[$p]}
  fi
  rm -f "$WORK/note"
  say ""
  say "== part $p (limit ${limit} s, $((SECONDS - T0)) s elapsed)"
  t=$SECONDS
  if [ "$limit" -lt 20 ] || [ "$limit" -lt "$need" ]; then
    rc=-1 status=SKIPPED
    note "not started: ${limit} s left of OLMO_GPU_ALL_BUDGET_S=$OLMO_GPU_ALL_BUDGET_S, ~${need} s needed"
  else
    { timeout -k 15 "$limit" bash -c "part_$p"; echo $? > "$WORK/rc"; } 2>&1 | tee -a "$LOG"
    rc=$(cat "$WORK/rc")
    case $rc in 0) status=passed ;; 124 | 137) status=TIMEOUT ;; *) status=FAILED ;; esac
  fi
  dt=$((SECONDS - t))
  STATUS[$p]=$status SECS[$p]=$dt
  n=$(tr -d '\n' 2>/dev/null < "$WORK/note" | sed 's/\\/\\\\/g; s/"/\\"/g')
  [ "$status" = passed ] || FAILED=1
  printf '{"bench": "gpu_all", "part": "%s", "status": "%s", "seconds": %d, "exit_code": %d, "note": "%s", "mode": "%s", "parts_run": "%s", "load_avg": [%s], "date": "%s", %s\n' \
    "$p" "$status" "$dt" "$rc" "$n" "$MODE" "${PARTS[*]}" "$(cut -d' ' -f1-3 /proc/loadavg | tr ' ' ',')" \
    "$(date -u +%Y-%m-%dT%H:%M:%S+00:00)" \
    "$(echo "$ENV_JSON" | sed 's/^{//; s/, "load_avg": \[[^]]*\]//; s/, "date": "[^"]*"//')" >> "$RES/gpu_all.jsonl"
  if [ "$status" = passed ]; then
    say "== part $p: passed in ${dt} s — $n"
  else
    say "!!!!!!!! part $p: $status (exit $rc) after ${dt} s — $n"
  fi
  sync_out
done

say ""
say "== gpu_all ($MODE) summary, $((SECONDS - T0)) s in all (setup included):"
for p in "${PARTS[@]}"; do say "$(printf '   %-10s %-8s %5d s' "$p" "${STATUS[$p]}" "${SECS[$p]}")"; done
say "records: $RES/gpu_all.jsonl"
sync_out
exit "$FAILED"
