#!/usr/bin/env bash
# GPU readiness check (issue #11): on one H100/H200, in <= 8 minutes, runs the GPU-only tests (CUDA and
# Triton parity of every registered fused op, the sm_90 Triton compile check, DALI GPU decoding), the op and
# whole-model step benchmarks and the training memory of every architecture at batch 32, and writes one
# report folder:
#
#   gpu_report/summary.md        what ran, exit status and wall time of each stage, nvidia-smi, the report
#   gpu_report/RESULTS.md        bench/make_results.py of the benchmark JSON (step table, HBM floor, ops)
#   gpu_report/ops.json, step.json, train_memory.json, tests-*.xml, *.log
#
# Usage: scripts/gpu_check.sh [--dry-run] [--out DIR]
#   --dry-run   print the stages (commands, time limits) without running them; works without a GPU
# Env: PYTHON (default .venv/bin/python or python), TDS_BENCH_STEP_COMPILE=0 to skip torch.compile in the
#      step benchmark (on by default on a GPU; it takes ~1-2 min per geometry).
# Exit status: 0 all stages passed, 1 a stage failed (see summary.md), 2 bad arguments or no GPU.
set -uo pipefail
cd "$(dirname "$0")/.."

DRY=0
OUT=gpu_report
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --out) shift; OUT="${1:?--out needs a folder}" ;;
    -h|--help) sed -n 2,16p "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
PY="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python)}"
export HF_HUB_OFFLINE=1

if [ "$DRY" = 0 ]; then
  if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check.sh: no CUDA device visible to $PY (use --dry-run to see the stages)" >&2
    exit 2
  fi
  mkdir -p "$OUT"
fi

# Every registered op's test file (tds_kernels/ops/registry.py): a new op is checked without editing this script.
OP_TESTS=$("$PY" -c "from tds_kernels.ops.registry import NAMES; print(' '.join('tests/test_%s.py' % n for n in NAMES))") || {
  echo "gpu_check.sh: cannot read the op registry with $PY" >&2; exit 2; }

# Time limits (seconds) per stage, summing to 470 s (7.8 min) so that the whole check stays under 8 min
# with start-up; a stage that runs over is killed and reported as failed (exit 124).
STAGES=(
  # name | limit | command
  "op-parity|90|$PY -m pytest -q -x -p no:cacheprovider $OP_TESTS -k 'cuda or gpu' --junitxml=$OUT/tests-ops.xml"
  "triton-sm90|45|$PY -m pytest -q -x -p no:cacheprovider tests/test_triton_compile.py --junitxml=$OUT/tests-triton.xml"
  "dali-gpu|45|$PY -m pytest -q -p no:cacheprovider tests/test_data_loader.py -k 'cuda or gpu' --junitxml=$OUT/tests-dali.xml"
  "op-bench|100|$PY -m pytest bench/ --benchmark-only --bench-device cuda -q -p no:cacheprovider -k 'not model_step and not data_loading' --benchmark-json=$OUT/ops.json"
  "step-bench|130|$PY -m pytest bench/test_step.py --benchmark-only --bench-device cuda -q -p no:cacheprovider --benchmark-json=$OUT/step.json"
  "train-memory|60|$PY bench/train_memory.py --device cuda --batch 32 --json $OUT/train_memory.json"
)

SUMMARY="$OUT/summary.md"
FAILED=0
if [ "$DRY" = 1 ]; then
  echo "gpu_check.sh --dry-run: stages (limit, command); report in $OUT/"
else
  {
    echo "# GPU check ($(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'))"
    echo
    echo '```'
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 || true
    "$PY" -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)" 2>&1
    echo '```'
    echo
    echo "| stage | limit | status | wall |"
    echo "|---|---|---|---|"
  } > "$SUMMARY"
fi

for stage in "${STAGES[@]}"; do
  IFS='|' read -r name limit cmd <<< "$stage"
  if [ "$DRY" = 1 ]; then
    printf '  %-12s %4ss  %s\n' "$name" "$limit" "$cmd"
    continue
  fi
  echo "== $name (limit ${limit}s)"
  t0=$(date +%s)
  timeout --signal=TERM --kill-after=10 "$limit" bash -c "$cmd" > "$OUT/$name.log" 2>&1
  rc=$?
  dt=$(( $(date +%s) - t0 ))
  status=$([ $rc = 0 ] && echo PASS || ([ $rc = 124 ] && echo "TIMEOUT" || echo "FAIL (exit $rc)"))
  [ $rc = 0 ] || FAILED=1
  echo "   $status in ${dt}s (log $OUT/$name.log)"
  echo "| $name | ${limit} s | $status | ${dt} s |" >> "$SUMMARY"
done

if [ "$DRY" = 1 ]; then
  echo "  report       $PY bench/make_results.py $OUT/ops.json $OUT/step.json -o $OUT/RESULTS.md (one section per JSON)"
  exit 0
fi

JSONS=()
for j in "$OUT/ops.json" "$OUT/step.json"; do [ -s "$j" ] && JSONS+=("$j"); done
if [ ${#JSONS[@]} -gt 0 ]; then
  "$PY" bench/make_results.py "${JSONS[@]}" -o "$OUT/RESULTS.md" > "$OUT/report.log" 2>&1 || FAILED=1
fi
{
  echo
  for name in op-parity triton-sm90 dali-gpu; do
    echo "### $name: last lines"; echo '```'; tail -n 5 "$OUT/$name.log" 2>/dev/null; echo '```'
  done
  echo
  echo "### Training memory, batch 32 (bench/train_memory.py)"; echo
  grep '^|' "$OUT/train-memory.log" 2>/dev/null || echo "(no table: see $OUT/train-memory.log)"
  echo
  [ -s "$OUT/RESULTS.md" ] && cat "$OUT/RESULTS.md"
} >> "$SUMMARY"
echo "report: $SUMMARY"
exit $FAILED
