#!/usr/bin/env bash
# Runs Rapport's whole test suite: formatting, lints, unit, property, integration and
# end-to-end tests (real HTTP, the official Segment and RudderStack SDKs — Python, Node, and
# the browser SDK in headless Chromium — a real PostgreSQL server, and Schemathesis fuzzing
# the API from its OpenAPI document).
# Installs what the tests need when it is missing (Debian, PyPI and npm packages).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v python3 >/dev/null || need_apt+=(python3 python3-pip)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
command -v node >/dev/null || need_apt+=(nodejs)
command -v npm >/dev/null || need_apt+=(npm)
command -v "${CHROMIUM:-/usr/bin/chromium}" >/dev/null || need_apt+=(chromium)
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

if ! command -v schemathesis >/dev/null; then
  echo "installing schemathesis (the API fuzzer of tests/api_fuzz.rs)"
  python3 -m pip install -q 'schemathesis>=4.3,<5'
fi

# The JavaScript SDKs, playwright-core (which drives the system's Chromium and downloads
# no browser) and axe-core (the dashboard's accessibility checks), as pinned by the lockfile.
npm ci --prefix crates/rapport/tests/sdk --no-audit --no-fund --loglevel=error
# The dashboard's embedded copies of its npm packages are exactly the locked packages.
bash scripts/vendor-dashboard.sh --check

# Incremental caches would double the build's disk use for a run that compiles once.
export CARGO_INCREMENTAL=0
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
# The end-to-end tests once more, with every server on a throwaway PostgreSQL database.
RAPPORT_TEST_STORE=postgres cargo test -p rapport --tests
