"""Bearer tokens for ``cmb-serve``: one per line of ``--token-file``; blank lines and ``#`` comments are skipped.

A request's token is compared with every listed one in constant time (``hmac.compare_digest``), so the
answer's timing does not reveal how much of a token was right. Callers are known by a :func:`fingerprint`
(the token's line and a short hash), never by the token itself: that is what the audit log and job owners hold.
The file is read again when it changes, so a token can be revoked without a restart.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "tokens"
>>> _ = path.write_text("# site A\\nalpha-secret-0123456789\\nbeta-secret-0123456789\\n")
>>> tokens = TokenFile(path)
>>> tokens.caller("Bearer beta-secret-0123456789").startswith("token 2 ")
True
>>> tokens.caller("Bearer wrong"), tokens.caller(None)
(None, None)
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
from pathlib import Path

#: a token shorter than this is refused at start-up: it could be guessed
MIN_TOKEN_LENGTH = 16


class TokenFileError(ValueError):
    """The token file is missing, empty or holds a token too short to be safe."""


def read_tokens(path: str | os.PathLike) -> list[str]:
    """The tokens listed in ``path``; raises :class:`TokenFileError` saying what to fix."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenFileError(f"{path}: cannot read the token file ({exc.__class__.__name__}); give a text file "
                             "with one token per line.") from None
    tokens = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    if not tokens:
        raise TokenFileError(f"{path}: lists no token; add one per line, e.g. the output of "
                             "`python -c \"import secrets; print(secrets.token_urlsafe(32))\"`.")
    short = [number for number, token in enumerate(tokens, 1) if len(token) < MIN_TOKEN_LENGTH]
    if short:
        raise TokenFileError(f"{path}: token {short[0]} is shorter than {MIN_TOKEN_LENGTH} characters and could be "
                             "guessed; use long random tokens (secrets.token_urlsafe(32)).")
    return tokens


def fingerprint(number: int, token: str) -> str:
    """How logs name the caller holding token ``number`` (1-based): its line and 8 hex digits of its SHA-256.

    >>> fingerprint(1, "alpha-secret-0123456789")
    'token 1 (sha256 e213d1b5)'
    """
    return f"token {number} (sha256 {hashlib.sha256(token.encode()).hexdigest()[:8]})"


class TokenFile:
    """The tokens of a file, re-read when the file's modification time changes."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: int | None = None
        self._tokens: list[bytes] = []
        self._reload()

    def _reload(self) -> None:
        stamp = self.path.stat().st_mtime_ns if self.path.exists() else None
        with self._lock:
            if stamp != self._stamp or not self._tokens:
                self._tokens = [token.encode() for token in read_tokens(self.path)]
                self._stamp = stamp

    def caller(self, authorization: str | None) -> str | None:
        """The caller's fingerprint for an ``Authorization: Bearer <token>`` header; None when it is missing or
        matches no token. Every token is compared, whichever matches, so the time taken does not depend on it."""
        scheme, _, presented = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            return None
        try:
            self._reload()
        except TokenFileError:
            pass  # a half-written file while it is being edited: keep the tokens read before
        candidate = presented.strip().encode()
        found = None
        for number, token in enumerate(self._tokens, 1):
            if hmac.compare_digest(candidate, token) and found is None:
                found = fingerprint(number, token.decode())
        return found
