"""Per-machine endpoint tokens: made at intent time, stored only as a hash.

A token reads `vac.<space>.<machine>.<secret>`, where the secret is 256
random bits (base64url, 43 characters).  The names in front are not secret
(they are in the machine's URLs anyway); they tell the endpoint which one
stored hash to compare with, so that it can tell a wrong token (401) from
another machine's genuine token (403) without an index of every token.

Only the SHA-256 of the whole token is kept, in the machine's directory as
`token.sha256`; comparisons take constant time.  A token dies with its
machine's record: once the directory is moved to `finished/`, the endpoint
refuses it.  Never log a token or write it to a state file.

Neighbours: `actuate` makes a token for each new machine; `endpoint`
checks the tokens machines present.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

PREFIX = "vac"
HASH_FILE = "token.sha256"
SECRET_BYTES = 32  # 256 bits

_NAME = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_TOKEN = re.compile(rf"^{PREFIX}\.({_NAME})\.({_NAME})\.([A-Za-z0-9_-]{{43}})\Z")


def new(space: str, machine: str) -> str:
    return f"{PREFIX}.{space}.{machine}.{secrets.token_urlsafe(SECRET_BYTES)}"


def digest(token: str) -> str:
    """What is stored: the SHA-256 of the token, in hex."""
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def owner(token: str) -> tuple[str, str] | None:
    """(space, machine) a well-formed token names, or None if it is malformed."""
    match = _TOKEN.match(token)
    return (match.group(1), match.group(2)) if match else None


def matches(token: str, stored: str) -> bool:
    """Does `token` hash to `stored` (hex)?  Constant time in the token's content."""
    return hmac.compare_digest(digest(token), stored.strip())
