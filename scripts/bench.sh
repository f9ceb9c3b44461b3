#!/usr/bin/env bash
# Runs every benchmark once and prints the tables they log.
#
# The standard sets are sized to finish in a few minutes. BenchmarkHost (internal/engine)
# compares `snapback backup --dir` (D), the snapshot store (S) and idevicebackup2 (I), each
# against its own `snapback simulate` process, on a journaled ext4 loop image (1 GB journal,
# as on any disk of 128 GB or more) when run as root. The reference figures of issue #16 take about half an hour on 2 cores:
#
#   SNAPBACK_BENCH_FILES=20000 SNAPBACK_BENCH_SIZE=2GB SNAPBACK_BENCH_MANY=200000 SNAPBACK_BENCH_INCR=100000 \
#     go test -run '^$' -bench 'Host/(full|incremental)' -benchtime 1x -timeout 3h ./internal/engine/
#
# and the million-file store / --dir comparison (about 9 minutes on a quiet 2-core machine, 36 under load;
# ~32 GB sparse loop image; the store's full backup of a million files peaks at about 90 MB of RAM):
#
#   SNAPBACK_BENCH_HUGE=1000000 go test -run '^$' -bench Host/huge -benchtime 1x -timeout 3h ./internal/engine/
#
# SNAPBACK_BENCH_RUNS sets the runs per contender (default 3, alternating order);
# SNAPBACK_BENCH_FS=btrfs or xfs puts BenchmarkHost on a loop image of that filesystem.
set -euo pipefail
cd "$(dirname "$0")/.."
go test -run '^$' -bench . -benchtime 1x -timeout 60m ./... 2>&1 | grep -v '^\(goos\|goarch\|pkg\|cpu\):'
