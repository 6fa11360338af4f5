#!/usr/bin/env bash
# Installs what building, running and testing progress-bridge needs, when it is missing:
# librdkafka (Debian librdkafka-dev), promtool (Debian prometheus), jemalloc (the image's allocator, for benchmarks),
# debootstrap (for the image check), headless Chromium and its driver (for the dashboard's browser tests), and the
# Python test clients (Selenium among them).
# Set BOOTSTRAP_FORCE=1 (CI does) to run apt-get and pip even when everything looks present.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "bootstrap: need root (or sudo) to run: $*" >&2; exit 1; fi
}

need_apt=()
pkg-config --exists rdkafka 2>/dev/null || need_apt+=(librdkafka-dev)
command -v pkg-config >/dev/null || need_apt+=(pkg-config)
command -v promtool >/dev/null || need_apt+=(prometheus)
command -v pip3 >/dev/null || python3 -m pip --version >/dev/null 2>&1 || need_apt+=(python3-pip)
# The allocator the image preloads, for benchmarking the bridge as it runs there (BENCHMARKS.md).
[ "$(dpkg-query -W -f='${Status}' libjemalloc2 2>/dev/null)" = "install ok installed" ] || need_apt+=(libjemalloc2)
# The image check (scripts/check-image.sh) builds the runtime stage's root filesystem with debootstrap.
# The dashboard's tests drive Debian's Chromium through chromedriver.
if [ "${1:-}" = "--test-tools" ]; then
  command -v debootstrap >/dev/null || need_apt+=(debootstrap)
  command -v chromium >/dev/null || need_apt+=(chromium)
  command -v chromedriver >/dev/null || need_apt+=(chromium-driver)
fi
if [ "${BOOTSTRAP_FORCE:-0}" = 1 ]; then
  need_apt=(librdkafka-dev pkg-config prometheus python3-pip python3-venv libjemalloc2 debootstrap chromium chromium-driver)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "bootstrap: installing ${need_apt[*]}" >&2
  as_root apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need_apt[@]}"
fi

if ! command -v swift >/dev/null; then
  echo "bootstrap: the Swift 6 toolchain is required (swift not on PATH)" >&2
  exit 1
fi

if [ "${1:-}" = "--test-tools" ]; then
  if [ "${BOOTSTRAP_FORCE:-0}" = 1 ] || ! python3 -c "import confluent_kafka, websockets, pytest, jwt, jsonschema, cryptography, selenium, schemathesis, openapi_spec_validator" 2>/dev/null; then
    echo "bootstrap: installing the Python test clients" >&2
    python3 -m pip install -q -r Tests/e2e/requirements.txt
  fi
  # The repository's own Python client (the end-to-end tests' monitor is built on it): always this checkout's.
  python3 -m pip install -q --no-deps --force-reinstall ./clients/python
fi
