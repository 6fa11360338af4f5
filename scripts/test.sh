#!/usr/bin/env bash
# Runs every test: Swift unit and integration tests (swift test), then the end-to-end tests of the
# built binary with the clients users run (Python confluent-kafka, websockets, promtool).
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

BRIDGE_BINARY="$(swift build --show-bin-path)/progress-bridge" python3 -m pytest -q Tests/e2e
echo "== end-to-end: $(( $(date +%s) - unit )) s"
