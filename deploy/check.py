#!/usr/bin/env python3
"""Checks deploy/: renders every kustomize overlay, validates the manifests against Kubernetes'
schemas (kubernetes-validate, strict) and CRDs against schemas kept here, runs checkov on the
manifests and the Dockerfile, and promtool on the alert rules. Exits non-zero on any failure."""
import json
import pathlib
import subprocess
import sys
import tempfile

import jsonschema
import yaml

HERE = pathlib.Path(__file__).resolve().parent
KUBERNETES_VERSION = "1.30.0"  # the oldest version we support
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): HERE / "schemas" / "servicemonitor.schema.json",
    ("kafka.strimzi.io/v1beta2", "KafkaTopic"): HERE / "schemas" / "kafkatopic.schema.json",
}
failures = []


def run(command, **kwargs):
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        failures.append(f"{' '.join(map(str, command))}\n{result.stdout}{result.stderr}")
    return result


# The overlays, and the topics (Strimzi KafkaTopic resources, applied in the operator's namespace).
overlays = sorted(p.parent for p in (HERE / "kubernetes" / "overlays").glob("*/kustomization.yaml")) + [HERE / "kubernetes" / "topics"]
with tempfile.TemporaryDirectory() as tmp:
    for overlay in overlays:
        rendered = run(["kubectl", "kustomize", str(overlay)])
        if rendered.returncode != 0:
            continue
        documents = [d for d in yaml.safe_load_all(rendered.stdout) if d]
        builtin, crds = [], []
        for doc in documents:
            key = (doc.get("apiVersion"), doc.get("kind"))
            (crds if key in CRD_SCHEMAS else builtin).append(doc)
        for doc in crds:
            schema = json.loads(CRD_SCHEMAS[(doc["apiVersion"], doc["kind"])].read_text())
            errors = [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(doc)]
            if errors:
                failures.append(f"{overlay.name}: {doc['kind']} {doc['metadata']['name']}: {errors}")
        path = pathlib.Path(tmp) / f"{overlay.name}.yaml"
        path.write_text(yaml.safe_dump_all(builtin))
        if builtin:
            run(["kubernetes-validate", "--strict", "--quiet", "-k", KUBERNETES_VERSION, str(path)])
        all_path = pathlib.Path(tmp) / f"{overlay.name}-all.yaml"
        all_path.write_text(rendered.stdout)
        run(["checkov", "--quiet", "--compact", "--framework", "kubernetes", "-f", str(all_path)])
        print(f"deploy: overlay {overlay.name}: {len(documents)} resources ({len(crds)} CRD) checked")
    run(["checkov", "--quiet", "--compact", "--framework", "dockerfile", "-f", str(HERE / "Dockerfile")])
    run(["promtool", "check", "rules", str(HERE / "prometheus" / "alerts.yaml")])
    # Every alert fires on recorded series that should fire it, and stays quiet on those that should not.
    run(["promtool", "test", "rules", str(HERE / "prometheus" / "alerts.test.yaml")])

if failures:
    print("deploy checks failed:\n" + "\n".join(failures), file=sys.stderr)
    sys.exit(1)
print(f"deploy: {len(overlays) - 1} overlays, the topics, the Dockerfile and the alert rules (checked and unit-tested): all checks passed")
