#!/usr/bin/env bash
# Runs every benchmark once and prints the tables they log.
set -euo pipefail
cd "$(dirname "$0")/.."
go test -run '^$' -bench . -benchtime 1x -timeout 60m ./... 2>&1 | grep -v '^\(goos\|goarch\|pkg\|cpu\):'
