"""Bearer tokens (JWT) on WebSocket and REST: forged, expired, alg none, wrong job, confusion."""
import asyncio
import base64
import json
import time
import uuid

import jwt
import pytest
import websockets
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from conftest import Bridge, http_get, job_state, wait_for, assert_outbound
from monitor import Monitor, a_job

SECRET = "a-very-long-shared-secret-of-32-bytes!!"
ISSUED = []  # every token made here: none may show up in a bridge's log


def token(jobs, key=SECRET, algorithm="HS256", exp_in=300, **claims):
    payload = {"exp": int(time.time()) + exp_in, "jobs": jobs, "sub": "dashboard", **claims}
    ISSUED.append(jwt.encode(payload, key, algorithm=algorithm))
    return ISSUED[-1]


def unsigned(jobs):
    def b64(obj):
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
    return b64({"alg": "none", "typ": "JWT"}) + "." + b64({"exp": int(time.time()) + 300, "jobs": jobs}) + "."


class Outcome:
    """What a subscription attempt got: HTTP 101 and the messages up to the snapshot, or a refusal's status and JSON body."""
    def __init__(self, status, messages=(), body=None, headers=None):
        self.status, self.messages, self.body, self.headers = status, list(messages), body, headers or {}


async def subscribe(url, headers=None):
    try:
        async with websockets.connect(url, additional_headers=headers or {}) as ws:
            messages = []
            while True:
                messages.append(assert_outbound(json.loads(await asyncio.wait_for(ws.recv(), 10))))
                if messages[-1]["type"] == "job.snapshot":
                    return Outcome(101, messages)
    except websockets.exceptions.InvalidStatus as refused:
        response = refused.response
        return Outcome(response.status_code, body=json.loads(response.body), headers=response.headers)


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    b = Bridge("--no-demo-monitor", "--jwt-secret", SECRET, "--jwt-issuer", "https://issuer.test", "--jwt-audience", "progress").wait_ready()
    job = "job_auth_" + uuid.uuid4().hex[:6]
    monitor = Monitor(b.bootstrap)
    for e in a_job(job, videos=2):
        monitor.send(job, e)
    monitor.flush()
    good = token([job], iss="https://issuer.test", aud="progress")
    assert wait_for(lambda: (job_state(b, job, token=good) or {}).get("state") == "completed", timeout=15)
    yield b, job
    code, _ = b.stop()
    assert code == 0
    log = "".join(b.lines)
    assert SECRET not in log, "the secret must never be logged"
    assert ISSUED and not any(t in log for t in ISSUED), "tokens must never be logged"


def claims(**extra):
    return {"iss": "https://issuer.test", "aud": "progress", **extra}


def test_a_valid_token_subscribes(secured):
    b, job = secured
    opened = asyncio.run(subscribe(f"{b.ws_url}/?job_id={job}&token={token([job], **claims())}"))
    assert opened.status == 101 and opened.messages[-1]["data"]["job"]["state"] == "completed"
    wildcard = asyncio.run(subscribe(f"{b.ws_url}/?job_id={job}", {"Authorization": "Bearer " + token(["*"], **claims())}))
    assert wildcard.status == 101 and wildcard.messages[-1]["type"] == "job.snapshot"


@pytest.mark.parametrize("name,make,status", [
    ("missing", lambda job: None, 401),
    ("forged", lambda job: token([job], key="another-secret-that-is-32-bytes-long!!", **claims()), 401),
    ("expired", lambda job: token([job], exp_in=-60, **claims()), 401),
    ("not yet valid", lambda job: token([job], nbf=int(time.time()) + 600, **claims()), 401),
    ("alg none", lambda job: unsigned([job]), 401),
    ("wrong issuer", lambda job: token([job], iss="https://evil.test", aud="progress"), 401),
    ("wrong audience", lambda job: token([job], iss="https://issuer.test", aud="other"), 401),
    ("wrong job", lambda job: token(["job_someone_else"], **claims()), 403),
])
def test_bad_tokens_are_refused_before_the_upgrade(secured, name, make, status):
    b, job = secured
    value = make(job)
    query = f"&token={value}" if value else ""
    code = "unauthorized" if status == 401 else "forbidden"
    refused = asyncio.run(subscribe(f"{b.ws_url}/?job_id={job}{query}"))
    assert refused.status == status, name
    assert refused.body["error"]["code"] == code and refused.body["error"]["message"]
    assert (refused.headers.get("WWW-Authenticate") == "Bearer") == (status == 401)
    if value:
        assert value not in json.dumps(refused.body), "a refusal never echoes the token"

    rest_status, body, _ = http_get(f"{b.http_url}/api/v1/bulk-jobs/{job}" + (f"?token={value}" if value else ""))
    assert rest_status == status, name
    assert json.loads(body)["error"]["code"] == code


def test_refusals_never_reveal_whether_a_job_exists(secured):
    b, job = secured
    other = token(["job_someone_else"], **claims())
    existing = http_get(f"{b.http_url}/api/v1/bulk-jobs/{job}?token={other}")
    missing = http_get(f"{b.http_url}/api/v1/bulk-jobs/job_does_not_exist?token={other}")
    assert existing[0] == missing[0] == 403
    assert json.loads(existing[1])["error"]["code"] == json.loads(missing[1])["error"]["code"]
    ws_existing = asyncio.run(subscribe(f"{b.ws_url}/?job_id={job}&token={other}"))
    ws_missing = asyncio.run(subscribe(f"{b.ws_url}/?job_id=job_does_not_exist&token={other}"))
    assert ws_existing.status == ws_missing.status == 403
    assert ws_existing.body["error"]["code"] == ws_missing.body["error"]["code"] == "forbidden"
    status, body, _ = http_get(f"{b.http_url}/api/v1/bulk-jobs?token={other}")
    assert status == 200 and json.loads(body)["total"] == 0, "a listing shows only granted jobs"


def test_public_key_tokens_and_algorithm_confusion(tmp_path):
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    key_file = tmp_path / "rsa.pem"
    key_file.write_bytes(public_pem)
    b = Bridge("--no-demo-monitor", "--jwt-public-key", str(key_file)).wait_ready()
    try:
        job = "job_rsa_1"
        good = jwt.encode({"exp": int(time.time()) + 300, "jobs": [job]}, private, algorithm="RS256")
        assert asyncio.run(subscribe(f"{b.ws_url}/?job_id={job}&token={good}")).status == 101
        # HS256 "signed" with the public key as the secret: the classic confusion attack.
        import hmac, hashlib
        def b64(raw):
            return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
        signing_input = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + b64(json.dumps({"exp": int(time.time()) + 300, "jobs": ["*"]}).encode())
        forged = signing_input + "." + b64(hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest())
        refused = asyncio.run(subscribe(f"{b.ws_url}/?job_id={job}&token={forged}"))
        assert refused.status == 401 and refused.body["error"]["code"] == "unauthorized"
    finally:
        assert b.stop()[0] == 0


def test_es256_tokens_from_a_jwks_file(tmp_path):
    private = ec.generate_private_key(ec.SECP256R1())
    numbers = private.public_key().public_numbers()
    def b64int(n):
        return base64.urlsafe_b64encode(n.to_bytes(32, "big")).rstrip(b"=").decode()
    jwks = {"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256", "use": "sig", "x": b64int(numbers.x), "y": b64int(numbers.y)}]}
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps(jwks))
    b = Bridge("--no-demo-monitor", "--jwks", str(jwks_file)).wait_ready()
    try:
        good = jwt.encode({"exp": int(time.time()) + 300, "jobs": ["*"]}, private, algorithm="ES256", headers={"kid": "k1"})
        status, body, _ = http_get(f"{b.http_url}/api/v1/bulk-jobs?token={good}")
        assert status == 200, body
        other = ec.generate_private_key(ec.SECP256R1())
        bad = jwt.encode({"exp": int(time.time()) + 300, "jobs": ["*"]}, other, algorithm="ES256", headers={"kid": "k1"})
        assert http_get(f"{b.http_url}/api/v1/bulk-jobs?token={bad}")[0] == 401
    finally:
        assert b.stop()[0] == 0


def test_origin_allow_list(tmp_path):
    b = Bridge("--no-demo-monitor", "--insecure-no-auth", "--allowed-origin", "https://dash.example.com").wait_ready()
    try:
        assert asyncio.run(subscribe(f"{b.ws_url}/?job_id=job_o1", {"Origin": "https://dash.example.com"})).status == 101
        refused = asyncio.run(subscribe(f"{b.ws_url}/?job_id=job_o1", {"Origin": "https://evil.example.com"}))
        assert refused.status == 403 and refused.body["error"]["code"] == "forbidden"
        assert any("AUTHENTICATION IS OFF" in line for line in b.lines)
    finally:
        assert b.stop()[0] == 0
