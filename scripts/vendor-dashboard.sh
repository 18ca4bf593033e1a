#!/usr/bin/env bash
# Copies the dashboard's packages (crates/rapport-server/dashboard/package.json, pinned by
# its lockfile) from npm into crates/rapport-server/dashboard/vendor/, which the binary
# embeds: a fresh clone builds and serves the dashboard with Cargo alone, and no page asks
# an outside host for anything.
#
# usage: scripts/vendor-dashboard.sh          refresh vendor/ (after changing package.json)
#        scripts/vendor-dashboard.sh --check  fail if vendor/ differs from the packages
set -euo pipefail
cd "$(dirname "$0")/../crates/rapport-server/dashboard"

npm ci --no-audit --no-fund --loglevel=error >/dev/null
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
mkdir -p "$out/lit-html/directives" "$out/uplot"
cp node_modules/lit-html/LICENSE node_modules/lit-html/*.js "$out/lit-html/"
cp node_modules/lit-html/directives/*.js "$out/lit-html/directives/"
# The directives that would put text into the page as markup are left out: every value
# shown is escaped, with no way around it.
rm "$out"/lit-html/directives/unsafe-*.js
cp node_modules/uplot/LICENSE node_modules/uplot/dist/uPlot.esm.js \
  node_modules/uplot/dist/uPlot.min.css "$out/uplot/"

if [ "${1:-}" = "--check" ]; then
  if ! diff -r "$out" vendor >/dev/null; then
    diff -rq "$out" vendor || true
    echo "crates/rapport-server/dashboard/vendor/ differs from its npm packages:" \
      "run scripts/vendor-dashboard.sh" >&2
    exit 1
  fi
  echo "dashboard vendor/ matches its npm packages"
else
  rm -rf vendor
  cp -r "$out" vendor
  echo "vendored: $(cd vendor && find . -type f | wc -l) files"
fi
