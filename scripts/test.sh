#!/usr/bin/env bash
# Runs the test suite. Integration tests need idevicebackup2, a D-Bus session and a Secret
# Service; under CI=true a missing tool fails the run instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
exec go test -count=1 -timeout 25m "$@" ./...
