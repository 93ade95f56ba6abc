"""Browser sessions of the review queue: an API key exchanged once for a signed cookie.

A browser cannot send ``Authorization: Bearer`` with a plain form post or an ``<audio src>``
request, so the review pages sign a reviewer in instead: the login form posts an API key with
the ``review`` (or ``admin``) scope; the answer sets the cookie ``audiodup_review``, which
holds the key's id and name, an expiry and a random session nonce, signed with HMAC-SHA256 and
the server's secret. The key itself is never stored in the cookie, a log or a page.

* The cookie is ``HttpOnly`` (no script reads it), ``SameSite=Strict`` (no other site's page
  makes the browser send it) and ``Secure`` when the request came over HTTPS; it lasts
  :data:`SESSION_S`.
* Every request re-reads the key file: a revoked key, or one that lost the ``review`` scope,
  ends its sessions at once.
* Every form that changes something carries a CSRF token derived from the session nonce
  (HMAC with the secret), checked on the post, besides ``SameSite``; posts whose ``Origin``
  names another site are refused too.
* The secret is 32 random bytes in ``<db>/service/review-secret`` (mode 0600), made by the
  first worker that needs it, so every worker process of the server signs and checks alike;
  deleting the file (and restarting) ends every session.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

SESSION_COOKIE = "audiodup_review"
SESSION_S = 8 * 3600
SECRET_FILE = "review-secret"
_SECRET_BYTES = 32


@dataclass(frozen=True)
class Session:
    """A signed-in reviewer: the API key's id and name, when the session ends (Unix seconds)
    and its nonce (the CSRF tokens of its forms derive from it)."""

    key_id: str
    name: str
    expires_at: int
    nonce: str


def load_secret(folder: Path) -> bytes:
    """The server's signing secret, from ``folder/review-secret``; the first caller makes it
    (exclusively, so concurrent workers end up with the one file)."""
    path = Path(folder) / SECRET_FILE
    for _ in range(50):
        with contextlib.suppress(FileNotFoundError):
            data = path.read_bytes()
            if len(data) == _SECRET_BYTES:
                return data
            if data:
                raise ValueError(f"{path} is not a review secret ({len(data)} bytes); remove it")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{SECRET_FILE}.{secrets.token_hex(6)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(secrets.token_bytes(_SECRET_BYTES))
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)  # fails if another worker made it first: then read theirs
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
        time.sleep(0.01)
    raise ValueError(f"cannot make the review secret {path}")


def issue(secret: bytes, key_id: str, name: str, now: float | None = None) -> tuple[str, Session]:
    """A new session for the key ``key_id`` (named ``name``) and its signed cookie value."""
    now = time.time() if now is None else now
    session = Session(key_id, name, int(now) + SESSION_S, secrets.token_urlsafe(16))
    payload = _b64(
        json.dumps(
            {"k": session.key_id, "n": session.name, "e": session.expires_at, "s": session.nonce},
            separators=(",", ":"),
        ).encode()
    )
    return f"{payload}.{_b64(_sign(secret, payload.encode()))}", session


def read(secret: bytes, token: str | None, now: float | None = None) -> Session | None:
    """The session of a cookie value, or None: absent, malformed, forged or expired."""
    if not token or token.count(".") != 1 or len(token) > 2048:
        return None
    payload, signature = token.split(".")
    try:
        given = _unb64(signature)
        if not hmac.compare_digest(given, _sign(secret, payload.encode())):
            return None
        data = json.loads(_unb64(payload))
        session = Session(str(data["k"]), str(data["n"]), int(data["e"]), str(data["s"]))
    except (ValueError, KeyError, TypeError):
        return None
    now = time.time() if now is None else now
    return session if session.expires_at > now else None


def csrf_token(secret: bytes, session: Session) -> str:
    """The token the session's forms carry."""
    return _b64(_sign(secret, f"csrf|{session.nonce}".encode()))


def csrf_ok(secret: bytes, session: Session, token: str | None) -> bool:
    # as bytes: compare_digest refuses str with non-ASCII characters (a forged token's)
    sent = str(token or "").encode("utf-8", "surrogateescape")
    return bool(sent) and hmac.compare_digest(sent, csrf_token(secret, session).encode())


def _sign(secret: bytes, data: bytes) -> bytes:
    return hmac.new(secret, data, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
