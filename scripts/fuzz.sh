#!/usr/bin/env bash
# Fuzzes with libFuzzer, each target for the given time:
#   EventFuzzer       the decode + validate path (JSON parser, schema validator, typed decoding);
#   SubscriberFuzzer  what subscribers and REST clients send (URL query, client messages, list queries);
#   StateRecordFuzzer records of the state topic (job headers, videos) as the bridge restores and serves them.
# The targets run at the same time, each for the given time.
# Usage: scripts/fuzz.sh [seconds per target]   (default 60; the test command runs 45). Crashes go to Fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/../Fuzz"
seconds="${1:-60}"
for target in EventFuzzer SubscriberFuzzer StateRecordFuzzer; do
  swift build -c debug -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library --product "$target"
done
bin="$(swift build -c debug --show-bin-path)"
mkdir -p artifacts corpus-run corpus-subscriber-run corpus-state-run
cp -n corpus/* corpus-run/ 2>/dev/null || true
cp -n corpus-subscriber/* corpus-subscriber-run/ 2>/dev/null || true
cp -n corpus-state/* corpus-state-run/ 2>/dev/null || true
run() {
  local target="$1" corpus="$2"
  FUZZ_SCHEMAS=../schemas "$bin/$target" "$corpus" \
    -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 -timeout=10 -artifact_prefix="artifacts/$target-" -print_final_stats=1
}
# The three targets run side by side (libFuzzer is single-threaded): the wall time is one target's, not three.
logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
pids=()
for pair in EventFuzzer:corpus-run SubscriberFuzzer:corpus-subscriber-run StateRecordFuzzer:corpus-state-run; do
  run "${pair%%:*}" "${pair#*:}" > "$logs/${pair%%:*}.log" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
for target in EventFuzzer SubscriberFuzzer StateRecordFuzzer; do
  echo "== $target"
  cat "$logs/$target.log"
done
exit "$status"
