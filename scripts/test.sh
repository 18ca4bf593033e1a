#!/usr/bin/env bash
# Runs Rapport's whole test suite: formatting, lints, unit, property, integration and
# end-to-end tests (real HTTP, a real Segment SDK, a real PostgreSQL server).
# Installs what the tests need when it is missing (Debian and PyPI packages).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v python3 >/dev/null || need_apt+=(python3 python3-pip)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
command -v promtool >/dev/null || need_apt+=(prometheus)   # promtool checks /metrics
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
if ! python3 -c 'import segment.analytics' 2>/dev/null; then
  echo "installing segment-analytics-python"
  python3 -m pip install -q segment-analytics-python
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
# The end-to-end tests once more, with every server on a throwaway PostgreSQL database.
RAPPORT_TEST_STORE=postgres cargo test -p rapport --tests
