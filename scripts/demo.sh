#!/usr/bin/env bash
# Starts a simulated iPhone and backs it up with Snapback.
set -euo pipefail
cd "$(dirname "$0")/.."
exec bin/snapback demo "$@"
