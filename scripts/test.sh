#!/usr/bin/env bash
# Runs every test: Swift unit and integration tests (swift test), then the end-to-end tests of the
# built binary with the clients users run (Python confluent-kafka, websockets, promtool), then the
# deployment checks (kustomize, kubernetes-validate, checkov, promtool check and test rules), then the image
# (both stages of deploy/Dockerfile, without a Docker engine), then a bounded
# libFuzzer run over event decoding and over what subscribers send.
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
e2e=$(date +%s)
echo "== end-to-end: $((e2e - unit)) s"

./scripts/check-deploy.sh
checked=$(date +%s)
echo "== deploy checks: $((checked - e2e)) s"

# The image: its build stage from exactly what its COPY lines name, its runtime stage in a debootstrapped root.
./scripts/check-image.sh
deploy=$(date +%s)
echo "== image: $((deploy - checked)) s"

# Hostile input: fuzz the decode + validate path and what subscribers send, for a bounded time each
# (longer by hand: scripts/fuzz.sh 3600). A crash fails the run (pipefail) and is printed.
./scripts/fuzz.sh "${FUZZ_SECONDS:-45}" 2>&1 | grep -v "ld.gold: warning" \
  | grep -E '^==|stat::number_of_executed_units|stat::peak_rss_mb|Done [0-9]+ runs|ERROR|SUMMARY|Test unit written|Fatal error|panic'
echo "== fuzzing: $(( $(date +%s) - deploy )) s"
