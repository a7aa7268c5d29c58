"""Sealing the shoppers' data kept at rest (case details and notes, transcripts, handoff
records and logs, the delivery inbox, uploaded files): AES-256-GCM with a key ring.

`DataKeys` holds one or more 32-byte keys, newest first: the first seals, every key opens,
so a new key can be put in front while values sealed with the old one stay readable until
`./aftersales data rekey` has re-sealed them (docs/security.md, "Rotating the data key").

Every sealed value names the key that sealed it (its id: the first 8 hex digits of the
key's SHA-256) and is bound to its record by the associated data (`context`, e.g.
`case:RT-123456:details`): a ciphertext copied into another record does not open.

- text:  `sealed:v1:<kid>:<base64url(nonce 12 bytes + ciphertext and tag)>`
- bytes: `SLD1` + kid (4 bytes) + nonce (12 bytes) + ciphertext and tag

Opening a value that is not sealed (written before sealing existed) returns it as it is,
so existing data stays readable; `rekey` seals it.

Keys come from `DATA_KEYS` (comma-separated base64url keys, newest first) or, when it is
not set, from a key generated on first use and kept in `<data dir>/data-key` (mode 0600).
Nothing here reads a key at import.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bot.files import write_private

log = logging.getLogger("gateway.sealing")

KEY_BYTES = 32
NONCE_BYTES = 12
TEXT_PREFIX = "sealed:v1:"
BYTES_MAGIC = b"SLD1"
KEY_FILE_NAME = "data-key"


class SealingError(Exception):
    """A sealed value cannot be opened, or the keys cannot be used."""


class DataKeyError(SealingError, ValueError):
    """`DATA_KEYS` or the key file does not hold usable keys; the message says which and why."""


class UnknownKeyError(SealingError):
    """The value was sealed with a key that is not in the ring (dropped too early, or another install's)."""

    def __init__(self, kid: str, known: tuple[str, ...]) -> None:
        self.kid = kid
        super().__init__(f"sealed with data key {kid}, which is not in DATA_KEYS (known: {', '.join(known)}); "
                         "put that key back (after the newest) until `./aftersales data rekey` has run")


class TamperedError(SealingError):
    """The value does not open with its key: changed, truncated, or moved from another record."""


def key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:8]


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def is_sealed_text(value: str) -> bool:
    return value.startswith(TEXT_PREFIX)


def is_sealed_bytes(data: bytes) -> bool:
    return data.startswith(BYTES_MAGIC)


@dataclass(frozen=True)
class DataKeys:
    """A key ring: `keys[0]` seals, every key opens."""

    keys: tuple[bytes, ...] = field(repr=False)
    _by_kid: dict[str, AESGCM] = field(init=False, repr=False, compare=False)
    _current_kid: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.keys:
            raise DataKeyError("no data key given")
        for key in self.keys:
            if len(key) != KEY_BYTES:
                raise DataKeyError(f"a data key must be {KEY_BYTES} bytes, one is {len(key)}")
        object.__setattr__(self, "_by_kid", {key_id(k): AESGCM(k) for k in reversed(self.keys)})
        object.__setattr__(self, "_current_kid", key_id(self.keys[0]))  # every seal names it

    @classmethod
    def generate(cls) -> "DataKeys":
        return cls((secrets.token_bytes(KEY_BYTES),))

    @classmethod
    def parse(cls, text: str, source: str = "DATA_KEYS") -> "DataKeys":
        """Comma-separated base64url keys, newest first (what `export()` writes)."""
        keys = []
        for number, item in enumerate((i.strip() for i in text.split(",") if i.strip()), 1):
            try:
                key = _b64decode(item)
            except (binascii.Error, ValueError):
                raise DataKeyError(f"{source}: key {number} is not base64url") from None
            if len(key) != KEY_BYTES:
                raise DataKeyError(f"{source}: key {number} is {len(key)} bytes, a data key is {KEY_BYTES} "
                                   "(make one with `./aftersales data new-key`)")
            keys.append(key)
        if not keys:
            raise DataKeyError(f"{source}: no key in it")
        return cls(tuple(keys))

    def export(self) -> str:
        """The ring as `DATA_KEYS` takes it."""
        return ",".join(_b64encode(k) for k in self.keys)

    def with_new_key(self) -> "DataKeys":
        """This ring with a fresh key in front (the first step of a rotation)."""
        return DataKeys((secrets.token_bytes(KEY_BYTES), *self.keys))

    @property
    def current_kid(self) -> str:
        return self._current_kid

    @property
    def kids(self) -> tuple[str, ...]:
        return tuple(key_id(k) for k in self.keys)

    def _cipher(self, kid: str) -> AESGCM:
        cipher = self._by_kid.get(kid)
        if cipher is None:
            raise UnknownKeyError(kid, self.kids)
        return cipher

    # -- text -------------------------------------------------------------------------------

    def seal_text(self, text: str, context: str) -> str:
        nonce = secrets.token_bytes(NONCE_BYTES)
        kid = self._current_kid
        sealed = self._by_kid[kid].encrypt(nonce, text.encode("utf-8"), context.encode("utf-8"))
        return f"{TEXT_PREFIX}{kid}:{_b64encode(nonce + sealed)}"

    def open_text(self, value: str, context: str) -> str:
        """The text `value` was sealed from; a value that is not sealed, as it is."""
        if not is_sealed_text(value):
            return value
        kid, sep, body = value[len(TEXT_PREFIX):].partition(":")
        if not sep:
            raise TamperedError("a sealed text without its key id")
        cipher = self._cipher(kid)
        try:
            raw = _b64decode(body)
        except (binascii.Error, ValueError):
            raise TamperedError("a sealed text that is not base64url") from None
        try:
            opened = cipher.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context.encode("utf-8"))
        except (InvalidTag, ValueError):
            raise TamperedError(f"a sealed text does not open for {context!r}") from None
        return opened.decode("utf-8")

    def text_is_current(self, value: str) -> bool:
        """Sealed with the newest key (`rekey` leaves it alone)."""
        return value.startswith(f"{TEXT_PREFIX}{self.current_kid}:")

    # -- bytes ------------------------------------------------------------------------------

    def seal_bytes(self, data: bytes, context: str) -> bytes:
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._cipher(self.current_kid).encrypt(nonce, data, context.encode("utf-8"))
        return BYTES_MAGIC + bytes.fromhex(self.current_kid) + nonce + sealed

    def open_bytes(self, data: bytes, context: str) -> bytes:
        """The bytes `data` was sealed from; bytes that are not sealed, as they are."""
        if not is_sealed_bytes(data):
            return data
        head = len(BYTES_MAGIC)
        kid = data[head:head + 4].hex()
        cipher = self._cipher(kid)
        body = data[head + 4:]
        try:
            return cipher.decrypt(body[:NONCE_BYTES], body[NONCE_BYTES:], context.encode("utf-8"))
        except (InvalidTag, ValueError):
            raise TamperedError(f"sealed bytes do not open for {context!r}") from None

    def bytes_are_current(self, data: bytes) -> bool:
        return data.startswith(BYTES_MAGIC + bytes.fromhex(self.current_kid))


@dataclass
class Resealed:
    """What one pass of `rekey` over a store did: values rewritten with the newest key, and
    records left as they were because a value in them does not open with any key of the ring."""

    rewritten: int = 0
    unreadable: int = 0

    def skip(self, what: str, error: SealingError) -> None:
        self.unreadable += 1
        log.error("left as it is: it does not open with the data keys", extra={"record": what, "error": str(error)})

    def __str__(self) -> str:
        return f"{self.rewritten} re-sealed" + (f", {self.unreadable} left unreadable (see the log)"
                                                if self.unreadable else "")


def resolve_data_keys(configured: str, key_file: Path) -> DataKeys:
    """`configured` (DATA_KEYS) when set; otherwise the key kept in `key_file`, generated
    there (mode 0600) on first use. An existing key file is never overwritten: a key that
    cannot be read is an error, not a reason to lose what it sealed."""
    if configured.strip():
        return DataKeys.parse(configured)
    try:
        return DataKeys.parse(key_file.read_text(encoding="ascii"), source=str(key_file))
    except FileNotFoundError:
        pass
    except (OSError, UnicodeDecodeError) as exc:
        raise DataKeyError(f"{key_file}: cannot read the data key: {exc}") from exc
    generated = DataKeys.generate()
    # Written beside it, then linked into place: if another process (the action server)
    # made one at the same moment, both use the one that got there first.
    temporary = key_file.with_name(f"{key_file.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    write_private(temporary, generated.export() + "\n")
    try:
        os.link(temporary, key_file)
    except FileExistsError:
        return DataKeys.parse(key_file.read_text(encoding="ascii"), source=str(key_file))
    finally:
        temporary.unlink(missing_ok=True)
    log.info("generated a data key", extra={"file": str(key_file), "kid": generated.current_kid})
    return generated
