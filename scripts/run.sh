#!/usr/bin/env bash
# Runs progress-bridge. With no arguments: the embedded default (in-process mock Kafka + demo
# monitor), so live progress shows at ws://localhost:8765/?job_id=job_demo_0001 within seconds.
# Any arguments are passed to the bridge (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh
swift build -c "${BUILD_CONFIGURATION:-debug}" --product progress-bridge >&2
exec "$(swift build -c "${BUILD_CONFIGURATION:-debug}" --show-bin-path)/progress-bridge" "$@"
