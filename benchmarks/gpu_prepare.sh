#!/usr/bin/env bash
# Here, on the machine without a GPU: put into .gpu/ (git-ignored) what a lent GPU machine lacks for
# benchmarks/gpu_check.sh: Fashion-MNIST's four IDX files (30 MB) and the wheels of the Python packages
# that its image does not hold (pydantic and its parts; typer and typing-extensions at the versions ban
# is tested with). Its python is 3.12. Then, with the device tool:
#   run(command="bash benchmarks/gpu_check.sh", carry=[".gpu"], timeout_s=600)
# docs/scale.md ("A lent GPU") says what the check runs and what comes back.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
FMNIST=${FMNIST:-/usr/share/datasets/fashion-mnist}
WHEELS="pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 typing-extensions==4.16.0 typer==0.29.2"

[ -d "$FMNIST" ] || { echo "error: no Fashion-MNIST at $FMNIST; run 'make data' first" >&2; exit 2; }
rm -rf .gpu.tmp && mkdir -p .gpu.tmp/data .gpu.tmp/whl
cp "$FMNIST"/*-ubyte.gz .gpu.tmp/data/
# shellcheck disable=SC2086
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .gpu.tmp/whl $WHEELS 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
rm -rf .gpu && mv .gpu.tmp .gpu
du -sh .gpu
ls .gpu/data .gpu/whl
