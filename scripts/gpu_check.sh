#!/usr/bin/env bash
# One prepared GPU check (issue 14): a session lent a GPU runs it at once, ~15 minutes lent for everything.
#
#   scripts/gpu_check.sh [OUT_DIR]              # on the GPU machine: under 8 minutes, every number in OUT_DIR/gpu_check.json
#   scripts/gpu_check.sh --dry-run [OUT_DIR]    # CPU, tiny sizes, ~1 min: checks the plumbing (tests/test_gpu_check.py);
#                                               # its fits only need a finite loss (a dozen steps need not lower it)
#
# Stages (each under its own time limit, so one stuck stage cannot eat the lent time; a failed stage is recorded and
# the next one runs):
#   1. environment: nvidia-smi, torch/CUDA/cuDNN versions, the GPU's name and memory
#   2. fit bf16-mixed and 16-mixed: `amlit fit` on the demo's generated faces with the paper's network (SphereFace-20,
#      width 1, 512-d, batch 256) for a few hundred steps: the loss must be finite and decreasing
#   3. training benchmark (scripts/bench_train.py): Lightning (packed, device-resident) vs plain, eager and compiled
#   3b. host-device sync audit (CUDA): syncs per training step of the Lightning fit, by the line causing them
#   4. embedding benchmark (scripts/bench_embed.py): the test-time network in float32 and bf16 at large batches
#   5. evaluation benchmark (scripts/bench_eval.py): BLUFR 10 trials (when ../shared/data has the config), MegaFace 1M
#   6. training benchmark with backbone and head compiled as CUDA graphs (mode reduce-overhead), plain and resident: last,
#      because the others matter more if the lent time runs short
# Python: .venv/bin/python when present, else python3 (PYTHON=... overrides).
set -uo pipefail

DRY_RUN=0
if [[ "${1:-}" == "--dry-run" ]]; then
  DRY_RUN=1
  shift
fi
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$(mkdir -p "${1:-gpu_check_out}" && cd "${1:-gpu_check_out}" && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$REPO/.venv/bin/python" ]]; then PYTHON="$REPO/.venv/bin/python"; else PYTHON=python3; fi
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" WANDB_MODE=offline NO_ALBUMENTATIONS_UPDATE=1
cd "$REPO" || exit 1

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
fi
COMPILED_LIMIT=$((LIMIT * 3 / 2))  # two compilations (Lightning resident, plain)
EMBED_LIMIT=$((LIMIT / 2))
# Worst case, every stage at its limit: 60 + 2 x (LIMIT + 30) + LIMIT + 2 x COMPILED_LIMIT + 2 x EMBED_LIMIT + LIMIT
# = 18 min on the GPU, more than is lent: typical runs are expected near 8, and the last stage is the one to lose.

failed=()
stage() {  # stage NAME LIMIT_S COMMAND...: runs it with a time limit, logs to OUT/NAME.log, records a failure
  local name="$1" limit="$2"
  shift 2
  echo "== $name (limit ${limit}s)"
  local start=$SECONDS
  if timeout "$limit" "$@" >"$OUT/$name.log" 2>&1; then
    echo "   ok in $((SECONDS - start)) s"
  else
    echo "   FAILED (exit $?) after $((SECONDS - start)) s: tail of $OUT/$name.log"
    tail -n 15 "$OUT/$name.log"
    failed+=("$name")
  fi
}

stage environment 60 "$PYTHON" - "$OUT/environment.json" <<'EOF'
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
print(json.dumps({k: v for k, v in info.items() if k != "nvidia_smi"}, indent=1))
print(info.get("nvidia_smi", "no GPU"))
json.dump(info, open(sys.argv[1], "w"), indent=1)
EOF

for precision in "${PRECISIONS[@]}"; do
  run="$OUT/fit-$precision"
  stage "fit-$precision" "$LIMIT" "$PYTHON" -m amlit fit --config configs/demo.yaml \
    "--trainer.default_root_dir=$run" "--trainer.accelerator=$DEVICE" --trainer.devices=1 \
    "--trainer.precision=$precision" "--trainer.max_steps=$FIT_STEPS" --trainer.log_every_n_steps=1 \
    --trainer.limit_val_batches=0 --trainer.enable_progress_bar=false "--data.root=$OUT/demo-data" "${FIT_ARGS[@]}"
  stage "fit-$precision-loss" 30 "$PYTHON" - "$run" "$OUT/fit-$precision.json" "$DRY_RUN" <<'EOF'
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
  "--json=$OUT/train-eager.json"
if ((${#COMPILE[@]})); then
  stage train-compiled "$COMPILED_LIMIT" "$PYTHON" scripts/bench_train.py "--device=$DEVICE" "${TRAIN_ARGS[@]}" \
    "${COMPILE[@]}" --skip=packed "--json=$OUT/train-compiled.json"
fi
if [[ "$DEVICE" == cuda ]]; then
  stage sync-audit "$EMBED_LIMIT" "$PYTHON" scripts/bench_train.py "--device=$DEVICE" "${TRAIN_ARGS[@]}" \
    --steps=40 --warmup=30 --sync-audit "--json=$OUT/sync-audit.json"
fi
stage embed "$EMBED_LIMIT" "$PYTHON" scripts/bench_embed.py "--device=$DEVICE" "${EMBED_ARGS[@]}" "--json=$OUT/embed.json"
stage eval "$LIMIT" "$PYTHON" scripts/bench_eval.py "--device=$DEVICE" "${EVAL_ARGS[@]}" "--json=$OUT/eval.json"

if ((${#COMPILE[@]})); then
  stage train-cudagraphs "$COMPILED_LIMIT" "$PYTHON" scripts/bench_train.py "--device=$DEVICE" "${TRAIN_ARGS[@]}" \
    "${COMPILE[@]}" --compile-head --compile-mode=reduce-overhead --skip=packed "--json=$OUT/train-cudagraphs.json"
fi

"$PYTHON" - "$OUT" "$DRY_RUN" "${failed[@]}" <<'EOF'
import json, sys
from pathlib import Path
out, dry_run, failed = Path(sys.argv[1]), sys.argv[2] == "1", sys.argv[3:]
report = {"dry_run": dry_run, "failed_stages": failed}
for path in sorted(out.glob("*.json")):
    if path.name != "gpu_check.json":
        report[path.stem] = json.loads(path.read_text())
(out / "gpu_check.json").write_text(json.dumps(report, indent=1))
print(f"wrote {out / 'gpu_check.json'}; failed stages: {failed or 'none'}")
EOF
((${#failed[@]} == 0))
