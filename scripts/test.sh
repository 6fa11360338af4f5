#!/usr/bin/env bash
# Runs every test: Swift unit and integration tests (swift test), then the end-to-end tests of the
# built binary with the clients users run (Python confluent-kafka, websockets, promtool, headless Chromium for the
# dashboard), then the deployment checks (kustomize, kubernetes-validate, checkov, promtool check and test rules),
# then a bounded libFuzzer run over event decoding and over what subscribers send; the image (both stages of
# deploy/Dockerfile, without a Docker engine) is checked beside the last three (its build at idle priority).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh --test-tools

start=$(date +%s)
swift build --build-tests
built=$(date +%s)
echo "== build: $((built - start)) s"

swift test --skip-build --parallel
unit=$(date +%s)
echo "== swift test: $((unit - built)) s"

# The image check (its build stage is a release build from scratch, its runtime stage a debootstrapped root) runs
# beside the end-to-end tests, the deployment checks and the fuzzing; its build stage at the kernel's idle priority
# (SCHED_IDLE), so that it gets only the CPU the tests leave, which the end-to-end tests — mostly waiting — leave a
# lot of. Measured: the end-to-end tests took 474 s beside a from-scratch image check at idle priority (609 s),
# 481 s alone. Its runtime stage runs at normal priority (its checks have deadlines). Its result is collected at
# the end.
image_log="$(mktemp)"
setsid ./scripts/check-image.sh --idle-build > "$image_log" 2>&1 &
image_pid=$!
trap 'kill -- -"$image_pid" 2>/dev/null || true; rm -f "$image_log"' EXIT

BRIDGE_BINARY="$(swift build --show-bin-path)/progress-bridge" python3 -m pytest -q Tests/e2e clients/python/tests
e2e=$(date +%s)
echo "== end-to-end: $((e2e - unit)) s"

./scripts/check-deploy.sh
checked=$(date +%s)
echo "== deploy checks: $((checked - e2e)) s"


# Hostile input: fuzz the decode + validate path and what subscribers send, for a bounded time each
# (longer by hand: scripts/fuzz.sh 3600). A crash fails the run (pipefail) and is printed.
./scripts/fuzz.sh "${FUZZ_SECONDS:-45}" 2>&1 | grep -v "ld.gold: warning" \
  | grep -E '^==|stat::number_of_executed_units|stat::peak_rss_mb|Done [0-9]+ runs|ERROR|SUMMARY|Test unit written|Fatal error|panic'
fuzzed=$(date +%s)
echo "== fuzzing: $((fuzzed - checked)) s"

# The image: its build stage from exactly what its COPY lines name, its runtime stage in a debootstrapped root.
image_status=0
wait "$image_pid" || image_status=$?
cat "$image_log"
echo "== image: finished $(( $(date +%s) - fuzzed )) s after the fuzzing (it ran beside the end-to-end tests, the deployment checks and the fuzzing)"
exit "$image_status"
