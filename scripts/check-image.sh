#!/usr/bin/env bash
# Proves deploy/Dockerfile without a Docker engine (see deploy/check_image.py): builds the build stage from exactly
# the files its COPY lines name with its own commands, and runs the binary in a debootstrapped copy of the runtime
# stage, as its user, with its environment. Needs root (debootstrap, chroot, mount namespaces) and Debian's mirror.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then exec sudo -E "$0" "$@"; fi
exec python3 deploy/check_image.py "$@"
