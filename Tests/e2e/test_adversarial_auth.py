"""Adversarial end to end, tokens: expiry while connected (4401), per-subject limits, JWKS algorithm pinning."""
import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid

import jwt
import pytest
import websockets
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from conftest import (Bridge, assert_alive, assert_gauges_back, assert_serves, baseline_gauges, http_get, metric, assert_outbound,
                      publish_reference_job, wait_for)
from test_hostile_clients import closed_code

pytestmark = pytest.mark.usefixtures("bridge_logs_on_failure")

SECRET = "adversarial-shared-secret-of-at-least-32-bytes"
ISSUED = []  # none of these may show up in a bridge's log


def token(jobs=("*",), sub="dashboard", exp_in=300, key=SECRET, algorithm="HS256", headers=None, exp=None):
    claims = {"exp": exp if exp is not None else int(time.time()) + exp_in, "jobs": list(jobs), "sub": sub}
    ISSUED.append(jwt.encode(claims, key, algorithm=algorithm, headers=headers))
    return ISSUED[-1]


def url(bridge, job, value):
    return f"{bridge.ws_url}/?job_id={job}&connection_id=conn_{uuid.uuid4().hex[:6]}&token={value}"


async def opened(bridge, job, value):
    """A subscriber that got connection.ack and job.snapshot (or an AssertionError)."""
    ws = await websockets.connect(url(bridge, job, value), ping_interval=None, open_timeout=10)
    kinds = [assert_outbound(json.loads(await asyncio.wait_for(ws.recv(), 10)))["type"] for _ in range(2)]
    assert kinds == ["connection.ack", "job.snapshot"], kinds
    return ws


async def admitted_or_code(bridge, job, value):
    """('open', ws) after ack and snapshot, or ('closed', close code) when closed before its first message."""
    ws = await websockets.connect(url(bridge, job, value), ping_interval=None, open_timeout=10)
    try:
        first = assert_outbound(json.loads(await asyncio.wait_for(ws.recv(), 10)))
    except websockets.exceptions.ConnectionClosed as closed:
        return "closed", closed.rcvd.code if closed.rcvd else None
    assert first["type"] == "connection.ack", first
    assert assert_outbound(json.loads(await asyncio.wait_for(ws.recv(), 10)))["type"] == "job.snapshot"
    return "open", ws


def upgrade_status(bridge, job, value):
    async def attempt():
        try:
            async with websockets.connect(url(bridge, job, value), open_timeout=10) as ws:
                await asyncio.wait_for(ws.recv(), 10)
                return 101
        except websockets.exceptions.InvalidStatus as refused:
            return refused.response.status_code
    return asyncio.run(attempt())


def rest_status(bridge, value):
    return http_get(f"{bridge.http_url}/api/v1/bulk-jobs?token={value}")[0]


@pytest.fixture(scope="module")
def secured():
    b = Bridge("--no-demo-monitor", "--jwt-secret", SECRET, "--jwt-leeway", "0",
               "--max-connections-per-subject", "2").wait_ready()
    try:
        checker = token(sub="checker", exp_in=3600)
        yield b, publish_reference_job(b, token=checker), checker
    finally:
        assert b.stop()[0] == 0, b.exit_report(30)
        log = "".join(b.lines)
        assert SECRET not in log and not any(t in log for t in ISSUED), "secrets and tokens are never logged"


def test_a_websocket_whose_token_expires_is_closed_with_4401_at_exp(secured):
    bridge, reference, checker = secured
    closes = metric(bridge, "progress_bridge_websocket_token_expired_closes_total")
    baseline = baseline_gauges(bridge)
    exp = int(time.time()) + 3
    short = token([reference], sub="shorty", exp=exp)
    assert upgrade_status(bridge, reference, token([reference], sub="late", exp_in=-2)) == 401, "leeway 0: expired is expired"

    async def scenario():
        steady = await opened(bridge, reference, token([reference], sub="steady"))
        expiring = await opened(bridge, reference, short)
        try:
            code = await closed_code(expiring, timeout=10)
            closed_at = time.time()
            await steady.send(json.dumps({"type": "ping", "id": "after"}))
            pong = assert_outbound(json.loads(await asyncio.wait_for(steady.recv(), 5)))
            return code, closed_at, pong
        finally:
            await steady.close()
            await expiring.close()
    code, closed_at, pong = asyncio.run(scenario())
    assert code == 4401, f"closed with {code}"
    assert exp - 0.2 <= closed_at <= exp + 3, f"closed {closed_at - exp:+.2f}s from exp (leeway 0)"
    assert pong["type"] == "pong" and pong["data"]["id"] == "after", "a subscriber with a valid token is unaffected"
    assert metric(bridge, "progress_bridge_websocket_token_expired_closes_total") == closes + 1
    assert_alive(bridge)
    assert_serves(bridge, reference, token=checker)
    assert_gauges_back(bridge, baseline)


def test_connections_per_token_subject_are_capped_with_1013(secured):
    bridge, reference, checker = secured
    refused = metric(bridge, "progress_bridge_websocket_connections_refused_total")
    baseline = baseline_gauges(bridge)

    async def scenario():
        held, outcomes = [], []
        try:
            for label, value in [("alice 1", token([reference], sub="alice")),
                                 ("alice 2", token(["*"], sub="alice")),
                                 ("alice 3", token([reference], sub="alice")),
                                 ("alice 4, other job", token(["*"], sub="alice")),
                                 ("bob", token([reference], sub="bob"))]:
                job = "job_other_" + uuid.uuid4().hex[:4] if "other job" in label else reference
                state, value_or_ws = await admitted_or_code(bridge, job, value)
                outcomes.append((label, state if state == "open" else value_or_ws))
                if state == "open":
                    held.append(value_or_ws)
            await held[0].close()  # alice's first: her slot comes back
            await asyncio.sleep(0.3)
            state, again = await admitted_or_code(bridge, reference, token([reference], sub="alice"))
            outcomes.append(("alice after one closed", state if state == "open" else again))
            if state == "open":
                held.append(again)
            return dict(outcomes)
        finally:
            for ws in held:
                await ws.close()
    outcomes = asyncio.run(scenario())
    assert outcomes == {"alice 1": "open", "alice 2": "open", "alice 3": 1013, "alice 4, other job": 1013, "bob": "open",
                        "alice after one closed": "open"}, outcomes
    assert metric(bridge, "progress_bridge_websocket_connections_refused_total") == refused + 2
    assert_alive(bridge)
    assert_serves(bridge, reference, token=checker)
    assert_gauges_back(bridge, baseline)


def b64url(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_jwks_keys_without_alg_accept_exactly_one_algorithm_and_a_first_wrong_token_pins_nothing(tmp_path):
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    rsa_numbers, ec_numbers = rsa_key.public_key().public_numbers(), ec_key.public_key().public_numbers()
    jwks = {"keys": [
        {"kty": "RSA", "kid": "r1", "use": "sig", "n": b64url(rsa_numbers.n.to_bytes(256, "big")),
         "e": b64url(rsa_numbers.e.to_bytes(3, "big"))},
        {"kty": "EC", "crv": "P-256", "kid": "e1", "x": b64url(ec_numbers.x.to_bytes(32, "big")),
         "y": b64url(ec_numbers.y.to_bytes(32, "big"))},
    ]}
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps(jwks))
    bridge = Bridge("--no-demo-monitor", "--jwks", str(jwks_file)).wait_ready()
    try:
        def signed(algorithm, key, kid):
            return token(key=key, algorithm=algorithm, headers={"kid": kid})
        rs256 = signed("RS256", rsa_key, "r1")
        reference = publish_reference_job(bridge, token=rs256)
        baseline = baseline_gauges(bridge)

        # The very first token this key sees names PS512 (same RSA key, a valid PS512 signature): refused...
        ps512 = signed("PS512", rsa_key, "r1")
        assert upgrade_status(bridge, reference, ps512) == 401
        assert rest_status(bridge, ps512) == 401
        # ...and it did not pin the key to PS512: RS256 still works, on both doors.
        assert rest_status(bridge, signed("RS256", rsa_key, "r1")) == 200
        assert upgrade_status(bridge, reference, signed("RS256", rsa_key, "r1")) == 101

        public_pem = rsa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        signing_input = b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "r1"}).encode()) + "." + \
            b64url(json.dumps({"exp": int(time.time()) + 300, "jobs": ["*"], "sub": "x"}).encode())
        confused = signing_input + "." + b64url(hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest())
        for label, value in [("RS512", signed("RS512", rsa_key, "r1")), ("PS256", signed("PS256", rsa_key, "r1")),
                             ("RS384", signed("RS384", rsa_key, "r1")), ("PS512 again", signed("PS512", rsa_key, "r1")),
                             ("HS256 keyed with the RSA public key", confused),
                             ("RS256 naming the EC key", signed("RS256", rsa_key, "e1"))]:
            assert rest_status(bridge, value) == 401, label
        assert rest_status(bridge, signed("ES256", ec_key, "e1")) == 200, "the EC key takes ES256"
        assert rest_status(bridge, signed("RS256", rsa_key, "r1")) == 200, "and RS256 still works after all that"

        assert_alive(bridge)
        assert_serves(bridge, reference, token=signed("RS256", rsa_key, "r1"))
        assert_gauges_back(bridge, baseline)
    finally:
        assert bridge.stop()[0] == 0
        log = "".join(bridge.lines)
        assert not any(t in log for t in ISSUED), "tokens are never logged"
