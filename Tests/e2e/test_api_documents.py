"""The API documents the bridge serves — OpenAPI 3.1 for REST, AsyncAPI 3 for Kafka and the WebSocket — are valid,
self-contained, and true: Schemathesis drives the running bridge from the OpenAPI document."""
import copy
import json
import os
import re
import shutil
import subprocess
import time
import urllib.request

import jsonschema
import jwt
import pytest
from openapi_spec_validator import validate as validate_openapi

from conftest import ROOT, Bridge, http_get
from test_auth import SECRET

ASYNCAPI_SCHEMA = json.loads((ROOT / "Tests" / "third_party" / "asyncapi-spec-json-schemas" / "3.0.0.json").read_text())


def served(bridge, name):
    status, body, content_type = http_get(f"{bridge.http_url}/api/v1/{name}")
    assert status == 200 and content_type.startswith("application/json"), (status, body[:200])
    return json.loads(body)


def references(document):
    return set(re.findall(r'"\$ref": ?"([^"]+)"', json.dumps(document)))


def test_the_openapi_document_is_valid_self_contained_and_covers_the_api(bridge):
    document = served(bridge, "openapi.json")
    validate_openapi(document)
    assert document["openapi"] == "3.1.0"
    outside = [r for r in references(document) if not r.startswith("#/")]
    assert outside == [], "every schema is bundled in"
    schemas = document["components"]["schemas"]
    assert {"outbound.job-progress", "outbound.video-progress", "outbound.rest", "commands.job.create", "commands.job.control", "common"} <= set(schemas)
    # Bundled, not copied in the repository: the source refers to schemas/ files, which are the bundled ones.
    source = json.loads((ROOT / "api" / "openapi.json").read_text())
    assert all(r.startswith("../schemas/") or r.startswith("#/") for r in references(source))
    assert schemas["outbound.job-progress"]["properties"].keys() == json.loads(
        (ROOT / "schemas" / "outbound" / "job-progress.schema.json").read_text())["properties"].keys()
    expected = {("/api/v1/bulk-jobs", "get"), ("/api/v1/bulk-jobs", "post"), ("/api/v1/bulk-jobs/{id}", "get"),
                ("/api/v1/bulk-jobs/{id}/videos", "get"), ("/api/v1/bulk-jobs/{id}/pause", "post"),
                ("/api/v1/bulk-jobs/{id}/resume", "post"), ("/api/v1/bulk-jobs/{id}/cancel", "post"),
                ("/api/v1/openapi.json", "get"), ("/api/v1/asyncapi.json", "get")}
    assert {(path, method) for path, item in document["paths"].items() for method in item} == expected


def test_the_asyncapi_document_is_valid_and_names_every_topic_and_the_websocket(bridge):
    document = served(bridge, "asyncapi.json")
    validator = jsonschema.Draft7Validator(ASYNCAPI_SCHEMA)
    errors = list(validator.iter_errors(document))
    assert errors == [], [e.message[:200] for e in errors[:3]]
    # The check can fail: AsyncAPI 2's "publish" is not an AsyncAPI 3 action.
    broken = copy.deepcopy(document)
    broken["operations"]["consumeProgressEvents"]["action"] = "publish"
    assert list(validator.iter_errors(broken)), "the AsyncAPI schema must reject an invalid document"
    addresses = {channel["address"] for channel in document["channels"].values()}
    assert addresses == {"progress.events", "progress.events.dlq", "progress.state", "progress.commands", "/"}
    assert [r for r in references(document) if not r.startswith("#/")] == []
    assert {"envelope", "commands.command", "outbound.message"} <= set(document["components"]["schemas"])


def test_methods_the_api_does_not_take_are_answered_405(bridge):
    for method, path in [("TRACE", "/api/v1/asyncapi.json"), ("DELETE", "/api/v1/bulk-jobs/job_x"), ("GET", "/api/v1/bulk-jobs/job_x/pause"),
                         ("PUT", "/api/v1/bulk-jobs")]:
        request = urllib.request.Request(bridge.http_url + path, method=method)
        try:
            urllib.request.urlopen(request, timeout=5)
            raise AssertionError(f"{method} {path} was served")
        except urllib.error.HTTPError as error:
            assert error.code == 405 and error.headers["Allow"], (method, path, error.code)
            assert json.loads(error.read())["error"]["code"] == "method_not_allowed"


def test_schemathesis_finds_nothing_the_openapi_document_does_not_say():
    assert shutil.which("schemathesis"), "scripts/bootstrap.sh --test-tools installs it"
    b = Bridge("--no-demo-monitor", "--jwt-secret", SECRET).wait_ready()
    try:
        token = jwt.encode({"exp": int(time.time()) + 600, "jobs": ["*"], "control": ["*"], "sub": "schemathesis"}, SECRET, algorithm="HS256")
        run = subprocess.run(
            ["schemathesis", "run", f"{b.http_url}/api/v1/openapi.json", "--url", b.http_url, "-H", f"Authorization: Bearer {token}",
             "--checks", "all", "--max-examples", "12", "--seed", "20261130", "--no-color"],
            cwd=ROOT / "Tests" / "e2e", env={**os.environ, "SCHEMATHESIS_HOOKS": "schemathesis_hooks"},
            capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
        generated = re.search(r"(\d+) generated, (\d+) passed", run.stdout)
        assert generated and int(generated.group(1)) >= 200 and generated.group(1) == generated.group(2), run.stdout[-3000:]
    finally:
        assert b.stop()[0] == 0
