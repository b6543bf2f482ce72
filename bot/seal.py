"""Sealing of secrets at rest (Fernet) and the key they are sealed with."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections.abc import Callable
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)


class SealError(Exception):
    """The seal key is missing, invalid, or does not open a sealed value."""


class Sealer:
    """Encrypts secrets for the store; derives the key that digests configs."""

    def __init__(self, key: bytes) -> None:
        try:
            self._fernet = Fernet(key)
        except (ValueError, TypeError):
            raise SealError("RECBOT_SEAL_KEY is not a valid Fernet key (44 url-safe base64 characters)") from None
        self.digest_key = hmac.new(key, b"recbot config digest", hashlib.sha256).digest()
        self._tag_key = hmac.new(key, b"recbot payload tag", hashlib.sha256).digest()

    def __repr__(self) -> str:
        return "Sealer(<key hidden>)"

    def tag(self, text: str) -> str:
        """A MAC of `text`, so values that round-trip through Slack cannot be forged."""
        return hmac.new(self._tag_key, text.encode(), hashlib.sha256).hexdigest()[:32]

    def verify(self, text: str, tag: str) -> bool:
        # As bytes: compare_digest raises on a non-ASCII str, and a forged tag may be one.
        return hmac.compare_digest(self.tag(text).encode(), tag.encode())

    def signed(self, purpose: str, text: str) -> str:
        """`<text>.<MAC>`, the MAC bound to `purpose`: a value for a Slack button or
        block id that comes back unforged, and is never valid for another purpose."""
        return f"{text}.{self.tag(purpose + ':' + text)}"

    def read_signed(self, purpose: str, value: object) -> str | None:
        """The text of a genuine `signed(purpose, text)`, or None."""
        if not isinstance(value, str):
            return None
        text, dot, tag = value.rpartition(".")
        return text if dot and self.verify(purpose + ":" + text, tag) else None

    def seal(self, plaintext: str) -> bytes:
        return self._fernet.encrypt(plaintext.encode())

    def unseal(self, token: bytes) -> str:
        try:
            return self._fernet.decrypt(token).decode()
        except InvalidToken:
            raise SealError("a sealed secret could not be opened: was RECBOT_SEAL_KEY changed?") from None


def key_file_for(database_url: str) -> Path | None:
    """Where the generated key lives: beside a SQLite database file, else nowhere."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database + ".key")


def missing_key(path: Path, sealed: int) -> str:
    """The words for a seal key file that is gone while `sealed` rows were sealed with it."""
    return (
        f"its seal key {path} is missing, and {sealed} open request(s) or job(s) are sealed with it: a new key "
        "could never open them; restore the key from its backup (if it is lost for good, set RECBOT_SEAL_KEY "
        "to a new key: those can then never be applied, so cancel them)"
    )


def other_key(key: bytes, configured: bool, database_url: str, sealed: bytes) -> str | None:
    """Why `key` cannot open `sealed`, a value the database holds sealed (another instance's key,
    or a key file restored from elsewhere), as `<what>: <how to fix>`; None when it opens it.
    `configured`: the key is RECBOT_SEAL_KEY's, not the file's beside the database."""
    try:
        Sealer(key).unseal(sealed)
    except SealError:
        where = "RECBOT_SEAL_KEY" if configured else f"the seal key {key_file_for(database_url)}"
        return (
            f"open requests or jobs in it were sealed with another key than {where}: they could not be applied, "
            "and approval buttons made with that key read as forged; give every instance the key that sealed "
            "them (one RECBOT_SEAL_KEY for all), or restore its key file"
        )
    return None


def resolve_seal_key(configured: str | None, database_url: str, sealed: Callable[[], int] = lambda: 0) -> bytes:
    """The configured key, or on the embedded SQLite default one generated
    once into a 0600 file beside the database (logged, never printed). A key is not made
    where `sealed()` rows wait for the missing one (a database restored without its key):
    SealError, saying so."""
    if configured:
        return configured.encode()
    path = key_file_for(database_url)
    if path is None:
        raise SealError(
            "RECBOT_SEAL_KEY is required with a shared database: generate one with "
            "`.venv/bin/python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'` "
            "and give every bot process the same value"
        )
    # No folder is made: a start refuses a DATABASE_URL whose folder is missing before it gets here.
    try:
        if path.exists():
            return path.read_bytes().strip()
        waiting = sealed()
        if waiting:
            raise SealError(missing_key(path, waiting))
        key = Fernet.generate_key()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key)
    except OSError as exc:
        raise SealError(
            f"cannot read or create the seal key {path} ({exc.strerror or type(exc).__name__}): "
            "check DATABASE_URL, and that recbot's user can read and write the folder"
        ) from None
    log.warning(
        "generated a new seal key in %s (mode 0600); back it up separately from the database: "
        "whoever has both can open the credentials sealed in it",
        path,
    )
    return key
