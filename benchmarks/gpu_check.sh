#!/usr/bin/env bash
# On a lent GPU machine, in one command (its limit is 10 minutes; the device gives 15 in all):
#   1. every attack, detector and mitigation once on tiny models (benchmarks/specs/gpu-smoke.yaml), so a
#      code path that breaks on CUDA shows within a minute or two;
#   2. the paper's architecture at full width (benchmarks/specs/fmnist-r18-full.yaml): ResNet18 trained
#      with augmentation, BAN and the paper's single search on every model, the six baselines at their
#      own settings without a cap on the BadNets and the first clean model, for what time is left.
# Prepare it here first (`bash benchmarks/gpu_prepare.sh`: the data and missing wheels into .gpu/), then
#   run(command="bash benchmarks/gpu_check.sh", carry=[".gpu"], timeout_s=600)
# What comes back under $OUT: gpu-check.log (everything printed), the two reports (gpu-smoke.md,
# fmnist-r18-full.md), verdicts.tsv (one line a result: model, method, verdict, target, score, seconds),
# and gpu-check.tar.gz (every result JSON and the report folders; not the models). Both runs resume:
# run the same command on the same warm machine and finished results are kept.
# Settings (environment): PYTHON (python3), DEVICE (cuda), TOTAL_S (540: when everything must have ended,
# report and archive included), SMOKE_S (150: the smoke's own limit), SMOKE_SPEC, FULL_SPEC, JOBS (2),
# WORK (/tmp/ban-gpu-check: the bench folders). On the CPU, as a check of this script:
#   OUT=/tmp/out DEVICE=cpu PYTHON=.venv/bin/python FULL_SPEC=benchmarks/specs/smoke.yaml bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
PYTHON=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
TOTAL_S=${TOTAL_S:-540}
SMOKE_S=${SMOKE_S:-150}
SMOKE_SPEC=${SMOKE_SPEC:-benchmarks/specs/gpu-smoke.yaml}
FULL_SPEC=${FULL_SPEC:-benchmarks/specs/fmnist-r18-full.yaml}
JOBS=${JOBS:-2}
WORK=${WORK:-/tmp/ban-gpu-check}
: "${OUT:?set OUT to the folder that comes back}"
mkdir -p "$OUT" "$WORK"
exec > >(tee "$OUT/gpu-check.log") 2>&1
export PYTHONUNBUFFERED=1

# the device's python lacks pydantic (and may hold older typer and typing-extensions): the wheels
# gpu_prepare.sh put into .gpu/whl, into a folder of their own, unless this python already has ban
if [ -d .gpu/whl ] && ! "$PYTHON" -c "import ban" 2>/dev/null; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl ||
    { echo "error: the wheels in .gpu/whl did not install"; exit 2; }
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}
DATA=()
[ -d .gpu/data ] && DATA=(--data-dir .gpu/data)
BAN=("$PYTHON" -m ban.cli)

echo "== machine"
nvidia-smi -L 2>/dev/null || echo "(no nvidia-smi)"
"$PYTHON" -c "import sys, torch, ban; print('python', sys.version.split()[0], '| torch', torch.__version__, \
'| cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '', '| ban', ban.__version__)" ||
  { echo "error: ban does not import here"; exit 2; }

# bench run with a wall-clock limit; a stopped run keeps its finished results (each is written whole, then renamed)
bench() {
  local spec=$1 out=$2 limit=$3 t0=$SECONDS rc
  echo "== $(basename "$spec" .yaml): at most ${limit} s"
  timeout -s INT -k 30 "$limit" "${BAN[@]}" bench run "$spec" --out "$out" "${DATA[@]}" \
    --device "$DEVICE" --jobs "$JOBS" --no-report -q
  rc=$?
  echo "== $(basename "$spec" .yaml): rc $rc after $((SECONDS - t0)) s$([ $rc = 124 ] || [ $rc = 130 ] && echo ' (stopped at its limit)')"
  "${BAN[@]}" bench report "$out" >/dev/null && cp "$out/report/report.md" "$OUT/$(basename "$spec" .yaml).md"
}

bench "$SMOKE_SPEC" "$WORK/smoke" "$SMOKE_S"
left=$((TOTAL_S - (SECONDS - start) - 45))
if [ "$left" -gt 60 ]; then
  bench "$FULL_SPEC" "$WORK/full" "$left"
else
  echo "== $(basename "$FULL_SPEC" .yaml): skipped, ${left} s left"
fi

echo "== verdicts (model, method, verdict, target, score, seconds)"
"$PYTHON" - "$WORK" "$OUT/verdicts.tsv" <<'EOF'
import json, sys
from pathlib import Path
rows = []
for f in sorted(Path(sys.argv[1]).glob("*/results/detect/*/*.json")):
    r = json.loads(f.read_text())
    v, m = r["verdict"], r["model"]
    truth = f"{m['attack'] or 'clean'}" + (f"->{m['target']} ASR {m['asr']:.2f}" if m.get("target") is not None else "")
    rows.append([f.parts[-5], m["id"], truth, r["method"], "backdoored" if v["backdoored"] else "clean",
                 str(v["target"]), f"{v['score']:.3f}", f"{v['seconds']:.1f}"])
text = "\n".join("\t".join(r) for r in rows) + "\n"
Path(sys.argv[2]).write_text(text)
print(text, end="")
EOF
tar -czf "$OUT/gpu-check.tar.gz" -C "$WORK" --exclude='*.safetensors' --exclude='*.partial' . &&
  echo "== archive: $(du -h "$OUT/gpu-check.tar.gz" | cut -f1), ${SECONDS} s in all"
