#!/usr/bin/env bash
# Checks deploy/ (kustomize overlays, Kubernetes schemas, checkov, promtool rules) with the tools
# installed into a private virtualenv (.build-deploy-venv) so they never clash with system packages.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v kubectl >/dev/null || { echo "check-deploy: kubectl (with kustomize) is required" >&2; exit 1; }
venv=.build-deploy-venv
if [ ! -x "$venv/bin/checkov" ] || [ ! -x "$venv/bin/kubernetes-validate" ]; then
  echo "check-deploy: installing kubernetes-validate and checkov into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q -r deploy/requirements.txt
fi
# checkov looks up guideline texts online; there is no network here and none is needed.
PATH="$PWD/$venv/bin:$PATH" "$venv/bin/python" deploy/check.py 2> >(grep -v -e prismacloud -e urllib3 >&2)
