"""W3C trace context (traceparent), as the bridge accepts it: version 00, lower-case hex, ids not all zero."""
import re
import secrets

_TRACEPARENT = re.compile(r"^00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$")


def parse_traceparent(value):
    """The value if it is a well-formed traceparent the bridge carries, else None."""
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return None
    return value if isinstance(value, str) and _TRACEPARENT.fullmatch(value) else None


def new_traceparent():
    """A new, sampled trace."""
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"
