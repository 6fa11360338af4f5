"""`progress-bridge validate`, and the schemas used unchanged by Python jsonschema: same verdicts."""
import json
import pathlib
import subprocess

import jsonschema
import referencing
import pytest

from conftest import BINARY, ROOT
from monitor import a_job, event

SCHEMAS = ROOT / "schemas"


def python_validator():
    resources = []
    for path in SCHEMAS.rglob("*.json"):
        document = json.loads(path.read_text())
        resources.append((document["$id"], referencing.Resource.from_contents(document)))
    registry = referencing.Registry().with_resources(resources)
    envelope = json.loads((SCHEMAS / "envelope.schema.json").read_text())
    return jsonschema.Draft202012Validator(envelope, registry=registry)


def documents():
    valid = a_job("job_cli_1", videos=3, fail={2})
    invalid = [
        event("job_cli_1", "video.completed", {"video_id": "v"}, 1),
        event("job_cli_1", "video.updated", {"video_id": "v", "state": "exploded"}, 1),
        {**event("job_cli_1", "job.progress", {"total_videos": 1, "completed": 0, "failed": 0}, 1), "job_id": "nope"},
        event("job_cli_1", "job.failed", {"error": {"code": "x"}}, 1),
        {k: v for k, v in event("job_cli_1", "job.canceled", {}, 1).items() if k != "event_id"},
        event("job_cli_1", "video.created", {"video_id": ""}, 1),
        {**event("job_cli_1", "job.progress", {"total_videos": 1, "completed": 0, "failed": 0}, 1), "seq": -1},
    ]
    return valid, invalid


def test_python_jsonschema_and_the_bridge_agree_on_every_document():
    valid, invalid = documents()
    checker = python_validator()
    lines = "\n".join(json.dumps(d) for d in valid + invalid) + "\n"
    result = subprocess.run([BINARY, "validate", "--schemas", str(SCHEMAS)], input=lines, capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 1, result.stderr
    verdicts = [json.loads(line)["valid"] for line in result.stdout.splitlines()]
    expected = [checker.is_valid(d) for d in valid + invalid]
    assert expected == [True] * len(valid) + [False] * len(invalid)
    assert verdicts == expected


def test_validate_reports_basic_output_and_exit_codes(tmp_path):
    good = tmp_path / "good.json"
    good.write_text(json.dumps(a_job("job_cli_2")[0]))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(event("job_cli_2", "video.completed", {"video_id": "v"}, 1)))

    ok = subprocess.run([BINARY, "validate", str(good)], capture_output=True, text=True, cwd=ROOT)
    assert ok.returncode == 0 and json.loads(ok.stdout)["valid"] is True

    failed = subprocess.run([BINARY, "validate", str(good), str(bad)], capture_output=True, text=True, cwd=ROOT)
    assert failed.returncode == 1
    results = [json.loads(line) for line in failed.stdout.splitlines()]
    assert [r["valid"] for r in results] == [True, False]
    error = results[1]["errors"][0]
    assert error["instanceLocation"] == "/data"
    assert error["keywordLocation"].endswith("/required")
    assert error["absoluteKeywordLocation"].endswith("events/video.completed.schema.json#/required")

    usage = subprocess.run([BINARY, "validate", "--schema", str(tmp_path / "missing.json"), str(good)], capture_output=True, text=True, cwd=ROOT)
    assert usage.returncode == 2 and "--schema" in usage.stderr


def test_validate_with_a_custom_schema_mapped_references_and_format_assertion(tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "ids.json").write_text(json.dumps({"$defs": {"uuid": {"type": "string", "format": "uuid"}}}))
    schema = tmp_path / "thing.json"
    schema.write_text(json.dumps({"$schema": "https://json-schema.org/draft/2020-12/schema",
                                  "properties": {"id": {"$ref": "https://example.test/lib/ids.json#/$defs/uuid"}}}))
    doc = tmp_path / "doc.json"
    doc.write_text(json.dumps({"id": "not-a-uuid"}))
    base = [BINARY, "validate", "--schema", str(schema), "--map", f"https://example.test/lib/={lib}"]
    annotated = subprocess.run(base + [str(doc)], capture_output=True, text=True, cwd=ROOT)
    assert annotated.returncode == 0, annotated.stdout + annotated.stderr
    asserted = subprocess.run(base + ["--format-assertion", str(doc)], capture_output=True, text=True, cwd=ROOT)
    assert asserted.returncode == 1
    assert json.loads(asserted.stdout)["errors"][0]["keywordLocation"] == "/properties/id/$ref/format"
