#!/usr/bin/env bash
# Runs each fuzz target for a short while; seeds under testdata/fuzz run in every `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
for pkg in $(go list ./...); do
  for f in $(go test -list '^Fuzz' "$pkg" 2>/dev/null | grep '^Fuzz' || true); do
    echo "== $pkg $f"
    go test -run '^$' -fuzz "^$f\$" -fuzztime "${FUZZTIME:-20s}" "$pkg"
  done
done
