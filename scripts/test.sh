#!/usr/bin/env bash
# Runs the test suite. Integration tests need idevicebackup2, a D-Bus session and a Secret
# Service; under CI=true a missing tool fails the run instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
# A fresh Debian machine gets what the tests need instead of skipping them.
if command -v apt-get >/dev/null 2>&1; then scripts/deps.sh; fi
exec go test -count=1 -timeout 25m "$@" ./...
