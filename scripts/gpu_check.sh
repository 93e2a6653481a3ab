#!/usr/bin/env bash
# One prepared GPU check (issue 14): a session lent a GPU runs it at once, ~15 minutes lent for everything.
#
#   scripts/gpu_prepare.sh                       # HERE first: the wheels and protocol files the GPU machine lacks
#   scripts/gpu_check.sh [OPTIONS] [OUT_DIR]     # on the GPU machine: every number in OUT_DIR/gpu_check.json
#   scripts/gpu_check.sh --dry-run [OUT_DIR]     # CPU, tiny sizes, ~1 min: checks the plumbing (tests/test_gpu_check.py);
#                                                # its fits only need a finite loss (a dozen steps need not lower it)
# Options:
#   --budget=SECONDS   the whole check's time (default 480 on the GPU): each stage's limit is cut to what is left, and a
#                      stage that would get under 30 s is skipped (recorded as skipped), so the check ends in time
#   --stages=A,B       only these stages (a name or its prefix: fit, train, eval, ...): rerun what failed or was skipped
#   --dry-run          the CPU plumbing check
#
# The device call, from scripts/gpu_prepare.sh: carry .gpu, timeout_s=570, and
#   PYTHONUNBUFFERED=1 bash scripts/gpu_check.sh "$OUT"
# OUT_DIR receives only gpu_check.json (rewritten after every stage: a run cut short keeps what it measured) and
# gpu_check.log (every stage's log); the generated data and the runs go to a temporary folder (WORK=... keeps them).
#
# Stages, most needed first (each under its own time limit, so one stuck stage cannot eat the lent time; a failed
# stage is recorded and the next one runs):
#   environment        nvidia-smi, torch/CUDA/cuDNN versions, the GPU's name and memory, amlit's imports
#   fit-bf16-mixed, fit-16-mixed (+ -loss): `amlit fit` on the demo's generated faces with the paper's network
#                      (SphereFace-20, width 1, 512-d, batch 256) for a few hundred steps: loss finite and decreasing
#   train-eager        scripts/bench_train.py: Lightning (packed, device-resident) vs the plain loop, eager
#   train-compiled     the same with the backbone compiled (Lightning resident, plain)
#   embed              scripts/bench_embed.py: the test-time network in float32 and bf16 at large batches
#   eval               scripts/bench_eval.py: BLUFR 10 trials (when the protocol files are there), MegaFace 1M
#   sync-audit         (CUDA) host-device syncs per training step of the Lightning fit, by the line causing them
#   train-cudagraphs   backbone and head compiled as CUDA graphs (mode reduce-overhead), Lightning resident and plain
# Python: .venv/bin/python when present, else python3 (PYTHON=... overrides).
set -uo pipefail

DRY_RUN=0
BUDGET=""
STAGES=""
OUT_ARG=""
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY_RUN=1 ;;
    --budget=*) BUDGET="${arg#--budget=}" ;;
    --stages=*) STAGES=",${arg#--stages=}," ;;
    -*)
      echo "gpu_check: unknown option $arg (see the head of $0)" >&2
      exit 2
      ;;
    *) OUT_ARG="$arg" ;;
  esac
done
if [[ -n "$BUDGET" && ! "$BUDGET" =~ ^[0-9]+$ ]]; then
  echo "gpu_check: --budget=$BUDGET is not a number of seconds" >&2
  exit 2
fi
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$(mkdir -p "${OUT_ARG:-gpu_check_out}" && cd "${OUT_ARG:-gpu_check_out}" && pwd)" || exit 2
if [[ -z "${WORK:-}" ]]; then
  WORK="$(mktemp -d "${TMPDIR:-/tmp}/amlit-gpu-check.XXXXXX")"
  trap 'rm -rf "$WORK"' EXIT
fi
mkdir -p "$WORK"
: >"$OUT/gpu_check.log"
: >"$WORK/stages.tsv"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$REPO/.venv/bin/python" ]]; then PYTHON="$REPO/.venv/bin/python"; else PYTHON=python3; fi
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" WANDB_MODE=offline NO_ALBUMENTATIONS_UPDATE=1
if [[ -d "$REPO/.gpu/shared-data" ]]; then export AMLIT_SHARED_DATA="$REPO/.gpu/shared-data"; fi
cd "$REPO" || exit 1

# The GPU machine's image lacks some of amlit's dependencies and has no network: install the wheels that
# scripts/gpu_prepare.sh put in .gpu/wheels into a folder of our own (never over the image's packages).
if ! "$PYTHON" -c "import jsonargparse, wandb, albumentations" 2>/dev/null; then
  if compgen -G "$REPO/.gpu/wheels/*.whl" >/dev/null; then
    site="$WORK/site"
    echo "== installing $(find "$REPO/.gpu/wheels" -name '*.whl' | wc -l) wheels from .gpu/wheels into $site"
    "$PYTHON" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --target "$site" \
      "$REPO"/.gpu/wheels/*.whl || echo "   pip install failed: the environment stage will say what is missing"
    export PYTHONPATH="$REPO:$site${PYTHONPATH#"$REPO"}"  # after the repository, before the rest
  else
    echo "== $PYTHON lacks jsonargparse/wandb/albumentations and there is no .gpu/wheels: run scripts/gpu_prepare.sh" \
      "where pip works and carry .gpu"
  fi
fi

if ((DRY_RUN)); then
  DEVICE=cpu
  FIT_STEPS=12
  FIT_ARGS=(--model.backbone.init_args.width_multiplier=0.125 --data.batch_size=8 --data.train_identities=12
    --data.images_per_identity=6 --data.test_identities=20 --data.test_images_per_identity=3
    --data.pairs_per_fold=2 --data.val_identities=4 --data.val_pairs_per_fold=2 --data.megaface_distractors=40
    --data.num_workers=0)
  PRECISIONS=(bf16-mixed)
  TRAIN_ARGS=(--steps=4 --warmup=1 --classes=8 --per-identity=4 --batch=8 --workers=0)
  COMPILE=()
  EMBED_ARGS=(--width=0.125 --batches=16 --steps=2 --warmup=1)
  EVAL_ARGS=(--distractors=2000 --skip=lfw,blufr,cli)
  LIMIT=300
  BUDGET="${BUDGET:-1800}"
  MIN_STAGE=5
else
  DEVICE=cuda
  FIT_STEPS=300
  FIT_ARGS=(--model.backbone.init_args.width_multiplier=1 --model.backbone.init_args.embedding_dim=512
    --data.batch_size=256 --data.num_workers=8 --model.learning_rate=0.1)
  PRECISIONS=(bf16-mixed 16-mixed)
  TRAIN_ARGS=(--width=1 --classes=10516 --per-identity=2 --batch=256 --precision=bf16-mixed --steps=150 --warmup=30
    --workers=8)
  COMPILE=(--compile)
  EMBED_ARGS=(--batches=256,1024,4096 --steps=20 --warmup=3)
  EVAL_ARGS=(--distractors=1000000 --skip=cli)
  LIMIT=120  # typical stage times (estimated, not yet measured on a GPU): fits ~45 s, eager ~90 s, eval ~60 s
  BUDGET="${BUDGET:-480}"
  MIN_STAGE=30
fi
TRAIN_ARGS+=("--data=$WORK/bench-data")  # the benchmark runs share one set of generated, packed faces
COMPILED_LIMIT=$((LIMIT * 3 / 2))  # two compilations (Lightning resident, plain)
EMBED_LIMIT=$((LIMIT / 2))
RESERVE=5  # seconds kept for the summary

wanted() {  # wanted NAME: whether --stages selects it (all when not given; an entry selects itself and NAME-*)
  [[ -z "$STAGES" || "$1" == environment ]] && return 0
  local entry
  for entry in ${STAGES//,/ }; do
    [[ "$1" == "$entry" || "$1" == "$entry"-* ]] && return 0
  done
  return 1
}

summarize() {  # OUT/gpu_check.json from the stage records and each stage's JSON
  "$PYTHON" - "$WORK" "$OUT" "$DRY_RUN" "$BUDGET" <<'EOF'
import json, sys
from pathlib import Path
work, out, dry_run, budget = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "1", int(sys.argv[4])
stages = {}
for line in (work / "stages.tsv").read_text().splitlines():
    name, status, seconds, limit, code = line.split("\t")
    stages[name] = {"status": status, "seconds": int(seconds), "limit_s": int(limit), "exit": int(code)}
report = {
    "dry_run": dry_run, "budget_s": budget, "stages": stages,
    "failed_stages": [name for name, stage in stages.items() if stage["status"] == "failed"],
    "skipped_stages": [name for name, stage in stages.items() if stage["status"] == "skipped"],
}
for path in sorted(work.glob("*.json")):
    report[path.stem] = json.loads(path.read_text())
(out / "gpu_check.json").write_text(json.dumps(report, indent=1))
EOF
}

T0=0  # bash counts SECONDS from the start of the script: the wheel install is inside the budget
stage() {  # stage NAME LIMIT_S COMMAND...: runs it within its limit and the budget, records how it went
  local name="$1" limit="$2"
  shift 2
  wanted "$name" || return 0
  local left=$((BUDGET - (SECONDS - T0) - RESERVE))
  if ((left < MIN_STAGE)); then
    echo "== $name: SKIPPED, ${left}s of the ${BUDGET}s budget left (rerun it with --stages=$name)"
    printf '%s\tskipped\t0\t%s\t0\n' "$name" "$limit" >>"$WORK/stages.tsv"
    summarize
    return 0
  fi
  ((limit > left)) && limit=$left
  echo "== $name (limit ${limit}s)"
  local start=$SECONDS code=0 status=ok
  timeout "$limit" "$@" >"$WORK/$name.log" 2>&1 || code=$?
  if ((code == 0)); then
    echo "   ok in $((SECONDS - start)) s"
  else
    status=failed
    echo "   FAILED (exit $code$( ((code == 124)) && echo ": time limit")) after $((SECONDS - start)) s:" \
      "tail of its log (all of it in $OUT/gpu_check.log)"
    tail -n 15 "$WORK/$name.log"
  fi
  printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$status" "$((SECONDS - start))" "$limit" "$code" >>"$WORK/stages.tsv"
  { echo "===== $name: $status (exit $code) in $((SECONDS - start)) s"; cat "$WORK/$name.log"; } >>"$OUT/gpu_check.log"
  summarize
}

stage environment 60 "$PYTHON" - "$WORK/environment.json" <<'EOF'
import json, os, platform, subprocess, sys
import torch
info = {
    "python": sys.version.split()[0], "torch": torch.__version__, "cuda": torch.version.cuda,
    "cudnn": torch.backends.cudnn.version(), "cuda_available": torch.cuda.is_available(),
    "cpu_count": os.cpu_count(), "platform": platform.platform(), "load": os.getloadavg(),
}
if torch.cuda.is_available():
    properties = torch.cuda.get_device_properties(0)
    info |= {"gpu": properties.name, "gpu_memory_gb": properties.total_memory / 2**30, "bf16": torch.cuda.is_bf16_supported()}
    info["nvidia_smi"] = subprocess.run(["nvidia-smi"], capture_output=True, text=True).stdout
# What the later stages import: a missing package fails here, in seconds, with its name.
import importlib.metadata as metadata
import amlit.lightning_cli, albumentations, jsonargparse, lightning, wandb  # noqa: F401
info["packages"] = {name: metadata.version(name) for name in
                    ("lightning", "torchmetrics", "jsonargparse", "wandb", "albumentations", "numpy", "pandas")}
print(json.dumps({k: v for k, v in info.items() if k != "nvidia_smi"}, indent=1))
print(info.get("nvidia_smi", "no GPU"))
json.dump(info, open(sys.argv[1], "w"), indent=1)
EOF

for precision in "${PRECISIONS[@]}"; do
  run="$WORK/fit-$precision"
  stage "fit-$precision" "$LIMIT" "$PYTHON" -m amlit fit --config configs/demo.yaml \
    "--trainer.default_root_dir=$run" "--trainer.accelerator=$DEVICE" --trainer.devices=1 \
    "--trainer.precision=$precision" "--trainer.max_steps=$FIT_STEPS" --trainer.log_every_n_steps=1 \
    --trainer.limit_val_batches=0 --trainer.enable_progress_bar=false "--data.root=$WORK/demo-data" "${FIT_ARGS[@]}"
  stage "fit-$precision-loss" 30 "$PYTHON" - "$run" "$WORK/fit-$precision.json" "$DRY_RUN" <<'EOF'
import json, math, sys
from pathlib import Path
import pandas as pd
run, out, dry_run = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "1"
frames = [pd.read_csv(p) for p in sorted(run.glob("**/metrics.csv"))]
loss = pd.concat(frames)[["step", "train/loss"]].dropna().groupby("step")["train/loss"].last().sort_index()
quarter = max(1, len(loss) // 4)
first, last = float(loss.iloc[:quarter].mean()), float(loss.iloc[-quarter:].mean())
result = {"steps": len(loss), "loss_first_quarter": first, "loss_last_quarter": last,
          "finite": bool(loss.map(math.isfinite).all()), "decreasing": last < first}
json.dump(result, open(out, "w"), indent=1)
print(result)
# A dry run's dozen steps need not lower the loss yet: there only finiteness is required.
sys.exit(0 if result["finite"] and (result["decreasing"] or dry_run) else 1)
EOF
done

stage train-eager "$LIMIT" "$PYTHON" scripts/bench_train.py "--device=$DEVICE" "${TRAIN_ARGS[@]}" \
  "--json=$WORK/train-eager.json"
if ((${#COMPILE[@]})); then
  stage train-compiled "$COMPILED_LIMIT" "$PYTHON" scripts/bench_train.py "--device=$DEVICE" "${TRAIN_ARGS[@]}" \
    "${COMPILE[@]}" --skip=packed "--json=$WORK/train-compiled.json"
fi
stage embed "$EMBED_LIMIT" "$PYTHON" scripts/bench_embed.py "--device=$DEVICE" "${EMBED_ARGS[@]}" "--json=$WORK/embed.json"
stage eval "$LIMIT" "$PYTHON" scripts/bench_eval.py "--device=$DEVICE" "${EVAL_ARGS[@]}" "--json=$WORK/eval.json"
if [[ "$DEVICE" == cuda ]]; then
  stage sync-audit "$EMBED_LIMIT" "$PYTHON" scripts/bench_train.py "--device=$DEVICE" "${TRAIN_ARGS[@]}" \
    --steps=40 --warmup=30 --sync-audit "--json=$WORK/sync-audit.json"
fi
if ((${#COMPILE[@]})); then
  stage train-cudagraphs "$COMPILED_LIMIT" "$PYTHON" scripts/bench_train.py "--device=$DEVICE" "${TRAIN_ARGS[@]}" \
    "${COMPILE[@]}" --compile-head --compile-mode=reduce-overhead --skip=packed "--json=$WORK/train-cudagraphs.json"
fi

summarize
"$PYTHON" - "$OUT/gpu_check.json" <<'EOF'
import json, sys
report = json.load(open(sys.argv[1]))
print(f"wrote {sys.argv[1]}: {len(report['stages'])} stages; failed: {report['failed_stages'] or 'none'};"
      f" skipped: {report['skipped_stages'] or 'none'}")
sys.exit(1 if report["failed_stages"] or report["skipped_stages"] else 0)
EOF
