"""Schemathesis hooks for the API test: a fresh Idempotency-Key on every call. Reusing a key for another request is
answered 422 (as the Idempotency-Key draft says), which Schemathesis would take for a valid request refused; the
keys' own behaviour is tested in test_commands.py."""
import uuid

import schemathesis


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    if case.headers and "Idempotency-Key" in case.headers:
        case.headers["Idempotency-Key"] = uuid.uuid4().hex
