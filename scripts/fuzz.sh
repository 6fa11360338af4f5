#!/usr/bin/env bash
# Fuzzes the decode + validate path (JSON parser, schema validator, typed decoding) with libFuzzer.
# Usage: scripts/fuzz.sh [seconds]   (default 60; CI runs 60). Crashes are written to Fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/../Fuzz"
seconds="${1:-60}"
swift build -c debug -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library --product EventFuzzer
mkdir -p artifacts corpus-run
cp -n corpus/* corpus-run/ 2>/dev/null || true
FUZZ_SCHEMAS=../schemas "$(swift build -c debug --show-bin-path)/EventFuzzer" corpus-run \
  -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 -timeout=10 -artifact_prefix=artifacts/ -print_final_stats=1
