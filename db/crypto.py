"""Envelope encryption, key files and pseudonyms for the intake bot.

This is the only module of the project that imports ``cryptography``. Everything else stores
and passes around opaque ``bytes`` blobs produced here.

Design:

* Every sensitive value is encrypted with a per-case / per-conversation / per-message
  :class:`DataKey` (AES-256-GCM, random 96-bit nonce).
* Each data key is stored only *wrapped* (AES-256-GCM encrypted) under a key-encryption key
  (KEK) from the :class:`KeyRing`. Rotating the KEK means rewrapping data keys, not
  re-encrypting data.
* Every blob's associated data binds it to a *context* string naming where it lives
  (``"table.column.row_id"``), so a blob copied to another row, column or table will not
  decrypt.
* Platform identities (phone numbers, Telegram ids) are never stored; only keyed
  HMAC-SHA256 pseudonyms of them are.

Blob format (data ciphertexts and wrapped keys)::

    version (1 byte) | kind (1 byte) | kid (8 bytes) | nonce (12 bytes) | ciphertext + tag

The associated data is the 10 header bytes, ``b"|"`` and the UTF-8 context.

Error messages produced here never contain plaintext, key material or ciphertext bytes, and
exceptions that wrap lower-level errors are raised ``from None`` so that the lower-level
exception (which may hold the secret input in its attributes) is not kept alive in tracebacks.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, NoReturn

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = [
    "FORMAT_VERSION",
    "KEYRING_FILE",
    "MASTER_KEY_ENV",
    "CryptoError",
    "DataKey",
    "DecryptionError",
    "KeyFileError",
    "KeyRing",
    "create_keyring",
    "ensure_development_keyring",
    "field_context",
    "load_keyring",
    "rotate_kek",
]

FORMAT_VERSION: int = 1
KEYRING_FILE = "keyring.json"
MASTER_KEY_ENV = "INTAKE_MASTER_KEY"

_KIND_DATA = 0x01
_KIND_WRAPPED_KEY = 0x02
_KEY_LEN = 32
_KID_LEN = 8
_NONCE_LEN = 12
_TAG_LEN = 16
_HEADER_LEN = 2 + _KID_LEN
_MIN_BLOB_LEN = _HEADER_LEN + _NONCE_LEN + _TAG_LEN
_WRAPPED_KEY_LEN = _MIN_BLOB_LEN + _KID_LEN + _KEY_LEN

_KEK_INFO = b"defender-intake kek v1"
_PEPPER_INFO = b"defender-intake pepper v1"
_PSEUDONYM_PREFIX = b"defender-intake|pseudonym|v1|"

_KID_RE = re.compile(r"[0-9a-f]{16}")
_B64_RE = re.compile(r"[A-Za-z0-9+/_-]*={0,2}")
_MAX_KEY_FILE_BYTES = 1 << 20
_KEY_FILE_FIELDS = frozenset({"format", "current", "keks", "pepper", "development", "created_at"})
_MAKE_MASTER_KEY = (
    "python -c 'import secrets,base64;print(base64.b64encode(secrets.token_bytes(32)).decode())'"
)


class CryptoError(Exception):
    """Base class of every error raised by :mod:`db.crypto`.

    Guarantees that the message never contains plaintext, key material or ciphertext bytes.
    """


class KeyFileError(CryptoError):
    """Key material is missing, unreadable, too widely readable or malformed.

    The message names the file path or environment variable, the exact problem and the fix.
    """


class DecryptionError(CryptoError):
    """A blob could not be authenticated or decrypted.

    Raised for tampered or truncated blobs, a wrong context, a wrong key, or an unknown format
    version or blob kind. Nothing is ever returned from an unauthenticated blob.
    """


class _KeyFileExistsError(KeyFileError):
    """``create_keyring`` found an existing key file (used to resolve creation races)."""


def field_context(table: str, column: str, row_id: str) -> str:
    """Build the canonical context ``"table.column.row_id"`` for an encrypted field.

    Args:
        table: Table name.
        column: Column name.
        row_id: Row identifier (a hex string).

    Returns:
        The context string; distinct (table, column, row_id) triples always give distinct
        strings because no part may contain the separator.

    Raises:
        ValueError: If any part is empty or contains ``"."``, ``"|"`` or whitespace.
    """
    for name, part in (("table", table), ("column", column), ("row_id", row_id)):
        if not part:
            raise ValueError(f"context {name} must not be empty")
        if "." in part or "|" in part or any(ch.isspace() for ch in part):
            raise ValueError(f"context {name} must not contain '.', '|' or whitespace")
    return f"{table}.{column}.{row_id}"


def _aad(header: bytes, context: str) -> bytes:
    if not isinstance(context, str) or not context:
        raise ValueError("encryption context must be a non-empty string")
    try:
        encoded = context.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("encryption context is not valid unicode") from None
    return header + b"|" + encoded


def _split_blob(blob: bytes, kind: int, what: str) -> tuple[bytes, bytes, bytes, bytes]:
    """Check a blob's framing; return (header, kid, nonce, ciphertext-with-tag)."""
    if not isinstance(blob, bytes | bytearray | memoryview):
        raise DecryptionError(f"{what} must be bytes")
    blob = bytes(blob)
    if len(blob) < _HEADER_LEN:
        raise DecryptionError(f"{what} is truncated ({len(blob)} bytes)")
    if blob[0] != FORMAT_VERSION:
        raise DecryptionError(f"{what} has unsupported format version {blob[0]}")
    if blob[1] != kind:
        raise DecryptionError(f"{what} has kind {blob[1]:#04x}, expected {kind:#04x}")
    if len(blob) < _MIN_BLOB_LEN:
        raise DecryptionError(f"{what} is truncated ({len(blob)} bytes)")
    header = blob[:_HEADER_LEN]
    nonce = blob[_HEADER_LEN : _HEADER_LEN + _NONCE_LEN]
    return header, header[2:], nonce, blob[_HEADER_LEN + _NONCE_LEN :]


def _encode_text(text: str, context: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        position = exc.start
    # Raised outside the handler so the UnicodeEncodeError (which holds the text) is dropped.
    raise ValueError(f"text for {context} is not valid unicode (lone surrogate at {position})")


class DataKey:
    """A 256-bit AES-GCM data key (one per case / per conversation / per queued message).

    Guarantees: every ``encrypt*`` call uses a fresh random nonce and binds the blob to its
    context and to this key's ``kid``; every ``decrypt*`` call either returns exactly what was
    encrypted with this key and context or raises :class:`DecryptionError`. ``repr`` shows only
    the (non-secret) kid. Instances cannot be pickled, so the raw key cannot leak into caches or
    queues by accident: persist the wrapped key instead.
    """

    __slots__ = ("_aead", "_key", "_kid")

    def __init__(self, key: bytes, kid: bytes) -> None:
        """Create a data key from raw key bytes and its identifier.

        Args:
            key: 32 bytes of key material.
            kid: 8 bytes identifying this key.

        Raises:
            ValueError: If ``key`` is not 32 bytes or ``kid`` is not 8 bytes.
        """
        if not isinstance(key, bytes) or len(key) != _KEY_LEN:
            raise ValueError("data key must be 32 bytes")
        if not isinstance(kid, bytes) or len(kid) != _KID_LEN:
            raise ValueError("data key id must be 8 bytes")
        self._key = key
        self._kid = kid
        self._aead = AESGCM(key)

    @classmethod
    def generate(cls) -> DataKey:
        """Return a new data key with 32 random key bytes and 8 random kid bytes."""
        return cls(os.urandom(_KEY_LEN), os.urandom(_KID_LEN))

    @property
    def kid(self) -> bytes:
        """The 8 random bytes identifying this data key (not secret)."""
        return self._kid

    def __repr__(self) -> str:
        """Show only the key id, never the key."""
        return f"DataKey(kid={self._kid.hex()})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        """Compare kid and key bytes in constant time."""
        if not isinstance(other, DataKey):
            return NotImplemented
        return hmac.compare_digest(self._kid + self._key, other._kid + other._key)

    def __hash__(self) -> int:
        """Hash by kid only."""
        return hash(self._kid)

    def __reduce__(self) -> NoReturn:
        """Refuse pickling and copying so raw keys are never serialised by accident."""
        raise TypeError("DataKey cannot be pickled; store the wrapped key instead")

    def encrypt(self, plaintext: bytes, context: str) -> bytes:
        """Encrypt bytes with AES-256-GCM, bound to ``context`` and this key.

        Args:
            plaintext: The bytes to protect.
            context: Where the blob will be stored, e.g. from :func:`field_context`.

        Returns:
            ``version | 0x01 | kid | nonce | ciphertext+tag``; never contains the plaintext.

        Raises:
            ValueError: If ``context`` is empty.
        """
        header = bytes((FORMAT_VERSION, _KIND_DATA)) + self._kid
        aad = _aad(header, context)
        nonce = os.urandom(_NONCE_LEN)
        return header + nonce + self._aead.encrypt(nonce, bytes(plaintext), aad)

    def decrypt(self, blob: bytes, context: str) -> bytes:
        """Authenticate and decrypt a blob made by :meth:`encrypt` with this key and context.

        Args:
            blob: The stored ciphertext.
            context: The context it was encrypted under.

        Returns:
            The original plaintext.

        Raises:
            DecryptionError: If the blob is truncated, of an unknown version or kind, was made
                with another data key, was tampered with, or ``context`` differs.
        """
        header, kid, nonce, sealed = _split_blob(blob, _KIND_DATA, "ciphertext")
        if not hmac.compare_digest(kid, self._kid):
            raise DecryptionError(f"ciphertext was made with another data key ({context})")
        aad = _aad(header, context)
        try:
            return self._aead.decrypt(nonce, sealed, aad)
        except InvalidTag:
            raise DecryptionError(f"authentication failed for {context}") from None

    def encrypt_text(self, text: str, context: str) -> bytes:
        """Encrypt a string as UTF-8; see :meth:`encrypt`.

        Raises:
            ValueError: If ``text`` contains lone surrogates (the message omits the text).
        """
        return self.encrypt(_encode_text(text, context), context)

    def decrypt_text(self, blob: bytes, context: str) -> str:
        """Decrypt a blob made by :meth:`encrypt_text`; see :meth:`decrypt`.

        Raises:
            DecryptionError: As :meth:`decrypt`, or if the plaintext is not UTF-8.
        """
        data = self.decrypt(blob, context)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            pass
        raise DecryptionError(f"decrypted value for {context} is not UTF-8 text")

    def encrypt_json(self, value: object, context: str) -> bytes:
        """Encrypt a JSON-serialisable value in canonical form; see :meth:`encrypt`.

        The value is serialised with sorted keys, compact separators and non-ASCII kept as-is,
        so equal values give equal plaintexts. NaN and infinities are rejected.

        Raises:
            TypeError: If ``value`` is not JSON serialisable.
            ValueError: If ``value`` holds NaN/infinity or lone surrogates.
        """
        text = json.dumps(
            value, separators=(",", ":"), ensure_ascii=False, sort_keys=True, allow_nan=False
        )
        return self.encrypt_text(text, context)

    def decrypt_json(self, blob: bytes, context: str) -> Any:
        """Decrypt a blob made by :meth:`encrypt_json` and parse it; see :meth:`decrypt`.

        Raises:
            DecryptionError: As :meth:`decrypt`, or if the plaintext is not valid JSON.
        """
        text = self.decrypt_text(blob, context)
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            pass
        raise DecryptionError(f"decrypted value for {context} is not valid JSON")


@dataclass(frozen=True)
class KeyRing:
    """Key-encryption keys and the pseudonym pepper.

    Guarantees: new data keys are always wrapped under ``current_kid``; any KEK in ``keks`` can
    unwrap; ``repr`` never shows ``keks`` or ``pepper``; ``keks`` is an immutable copy.

    Attributes:
        current_kid: 16 lowercase hex chars naming the KEK used for new wraps.
        keks: Key id -> 32-byte key-encryption key; includes ``current_kid``.
        pepper: 32-byte HMAC key for :meth:`pseudonym`, independent of the KEKs.
        development: True for auto-generated development keys.
        source: Where the keys came from, for messages.
    """

    current_kid: str
    keks: Mapping[str, bytes] = field(repr=False)
    pepper: bytes = field(repr=False)
    development: bool
    source: str
    _aeads: Mapping[str, AESGCM] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        """Validate the keys and freeze ``keks``.

        Raises:
            ValueError: If a key id is not 16 lowercase hex chars, a key or the pepper is not
                32 bytes, or ``current_kid`` is not in ``keks``.
        """
        keks = dict(self.keks)
        for kid, kek in keks.items():
            if not isinstance(kid, str) or not _KID_RE.fullmatch(kid):
                raise ValueError("key ids must be 16 lowercase hex characters")
            if not isinstance(kek, bytes) or len(kek) != _KEY_LEN:
                raise ValueError(f"key-encryption key {kid} must be 32 bytes")
        if not isinstance(self.current_kid, str) or not _KID_RE.fullmatch(self.current_kid):
            raise ValueError("current_kid must be 16 lowercase hex characters")
        if self.current_kid not in keks:
            raise ValueError(f"current key id {self.current_kid} is not in keks")
        if not isinstance(self.pepper, bytes) or len(self.pepper) != _KEY_LEN:
            raise ValueError("pepper must be 32 bytes")
        object.__setattr__(self, "keks", MappingProxyType(keks))
        aeads = {kid: AESGCM(kek) for kid, kek in keks.items()}
        object.__setattr__(self, "_aeads", MappingProxyType(aeads))

    def _wrap(self, data_key: DataKey, context: str) -> bytes:
        header = bytes((FORMAT_VERSION, _KIND_WRAPPED_KEY)) + bytes.fromhex(self.current_kid)
        aad = _aad(header, context)
        nonce = os.urandom(_NONCE_LEN)
        sealed = self._aeads[self.current_kid].encrypt(nonce, data_key._kid + data_key._key, aad)
        return header + nonce + sealed

    def new_data_key(self, context: str) -> tuple[DataKey, bytes]:
        """Generate a random data key and wrap it under the current KEK.

        Args:
            context: Where the wrapped key will be stored, e.g. ``"case.key.<row id>"``.

        Returns:
            The data key and its wrapped form (``version | 0x02 | kek kid | nonce | sealed``),
            bound to ``context``.
        """
        data_key = DataKey.generate()
        return data_key, self._wrap(data_key, context)

    def unwrap(self, wrapped: bytes, context: str) -> DataKey:
        """Recover a data key from its wrapped form.

        Args:
            wrapped: Output of :meth:`new_data_key` or :meth:`rewrap`.
            context: The context it was wrapped under.

        Returns:
            The same data key (same kid and key bytes) that was wrapped.

        Raises:
            DecryptionError: If the KEK id is not in this key ring, the blob is truncated,
                tampered with or of an unknown version/kind, or ``context`` differs.
        """
        header, kek_id, nonce, sealed = _split_blob(wrapped, _KIND_WRAPPED_KEY, "wrapped key")
        if len(header) + len(nonce) + len(sealed) != _WRAPPED_KEY_LEN:
            raise DecryptionError(f"wrapped key for {context} has the wrong length")
        kid = kek_id.hex()
        aead = self._aeads.get(kid)
        if aead is None:
            raise DecryptionError(f"key id {kid} is not in the key ring from {self.source}")
        aad = _aad(header, context)
        try:
            plain = aead.decrypt(nonce, sealed, aad)
        except InvalidTag:
            raise DecryptionError(f"authentication failed for {context}") from None
        return DataKey(plain[_KID_LEN:], plain[:_KID_LEN])

    def rewrap(self, wrapped: bytes, context: str) -> bytes:
        """Re-wrap a wrapped data key under the current KEK (key rotation).

        Args:
            wrapped: A wrapped key under any KEK of this ring.
            context: The context it was wrapped under; the result is bound to it too.

        Returns:
            The same data key wrapped under ``current_kid``; data encrypted with it still
            decrypts.

        Raises:
            DecryptionError: As :meth:`unwrap`.
        """
        return self._wrap(self.unwrap(wrapped, context), context)

    def pseudonym(self, kind: str, value: str) -> str:
        """Keyed, deterministic pseudonym of a platform identity.

        Computes ``HMAC-SHA256(pepper, b"defender-intake|pseudonym|v1|" + kind + b"\\x00" +
        value)``. Without the pepper, pseudonyms cannot be linked to identities.

        Args:
            kind: Identity namespace, e.g. ``"telegram"`` or ``"phone"``.
            value: The identity itself.

        Returns:
            64 lowercase hex chars; equal inputs give equal outputs, different kinds, values or
            peppers give different outputs.

        Raises:
            ValueError: If ``kind`` is empty or contains NUL (which would make the encoding
                ambiguous), or either argument is not valid unicode.
        """
        if not kind or "\x00" in kind:
            raise ValueError("pseudonym kind must be non-empty and must not contain NUL")
        encoded: bytes | None = None
        with contextlib.suppress(UnicodeEncodeError):
            encoded = kind.encode("utf-8") + b"\x00" + value.encode("utf-8")
        if encoded is None:
            # Raised outside the handler: the UnicodeEncodeError holds the identity.
            raise ValueError("pseudonym kind or value is not valid unicode")
        return hmac.new(self.pepper, _PSEUDONYM_PREFIX + encoded, hashlib.sha256).hexdigest()


# --------------------------------------------------------------------------------------------
# Key material loading
# --------------------------------------------------------------------------------------------


def _b64_to_key(text: object) -> bytes | None:
    """Decode standard or urlsafe base64 (padding optional) of exactly 32 bytes, else None."""
    if not isinstance(text, str):
        return None
    text = text.strip()
    if not _B64_RE.fullmatch(text):
        return None
    body = text.rstrip("=").replace("-", "+").replace("_", "/")
    if len(body) % 4 == 1:
        return None
    try:
        raw = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == _KEY_LEN else None


def _hkdf(master: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=_KEY_LEN, salt=None, info=info).derive(master)


def _keyring_from_env(env: Mapping[str, str]) -> KeyRing | None:
    value = env.get(MASTER_KEY_ENV)
    if not value:
        return None
    master = _b64_to_key(value)
    if master is None:
        raise KeyFileError(
            f"environment variable {MASTER_KEY_ENV} is not base64 of exactly 32 bytes; "
            f"generate one with `{_MAKE_MASTER_KEY}`"
        )
    kek = _hkdf(master, _KEK_INFO)
    kid = hashlib.sha256(kek).hexdigest()[:16]
    return KeyRing(
        current_kid=kid,
        keks={kid: kek},
        pepper=_hkdf(master, _PEPPER_INFO),
        development=False,
        source=f"environment variable {MASTER_KEY_ENV}",
    )


@dataclass(frozen=True)
class _KeyFile:
    keyring: KeyRing
    created_at: str


def _missing_message(path: Path, key_dir: Path) -> str:
    return (
        f"no key file at {path}; create one with `intake keys init --dir {key_dir}` "
        f"or set {MASTER_KEY_ENV}"
    )


def _read_key_file(key_dir: Path) -> _KeyFile:
    path = key_dir / KEYRING_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise KeyFileError(_missing_message(path, key_dir)) from None
    except OSError as exc:
        raise KeyFileError(f"cannot open key file {path}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise KeyFileError(f"key file {path} is not a regular file")
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            raise KeyFileError(
                f"key file {path} has mode {mode:04o}, which lets other users read or change "
                f"it; run `chmod 600 {path}`"
            )
        chunks: list[bytes] = []
        size = 0
        while size <= _MAX_KEY_FILE_BYTES:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    if size > _MAX_KEY_FILE_BYTES:
        raise KeyFileError(f"key file {path} is too large to be a key ring")
    return _parse_key_file(path, b"".join(chunks))


def _parse_key_file(path: Path, raw: bytes) -> _KeyFile:
    def bad(problem: str) -> NoReturn:
        raise KeyFileError(
            f"key file {path} is malformed: {problem}; restore it from backup "
            f"(do not regenerate it: data encrypted under its keys would be lost)"
        )

    invalid = object()
    doc: object = invalid
    with contextlib.suppress(UnicodeDecodeError, json.JSONDecodeError):
        # The exception objects hold the key material: drop them before raising.
        doc = json.loads(raw.decode("utf-8"))
    if doc is invalid:
        bad("not valid UTF-8 JSON")
    if not isinstance(doc, dict):
        bad("top level is not a JSON object")
    unknown = sorted(set(doc) - _KEY_FILE_FIELDS)
    if unknown:
        bad(f"unexpected field(s) {', '.join(unknown)}")

    fmt = doc.get("format")
    if type(fmt) is not int or fmt != FORMAT_VERSION:
        bad(f"format: expected {FORMAT_VERSION}")

    keks_raw = doc.get("keks")
    if not isinstance(keks_raw, dict) or not keks_raw:
        bad("keks: missing or not a non-empty object")
    keks: dict[str, bytes] = {}
    for index, (kid, value) in enumerate(keks_raw.items()):
        if not _KID_RE.fullmatch(kid):
            bad(f"keks: key id #{index + 1} is not 16 lowercase hex characters")
        kek = _b64_to_key(value)
        if kek is None:
            bad(f"keks.{kid}: not 32 bytes of base64")
        keks[kid] = kek

    current = doc.get("current")
    if not isinstance(current, str) or not _KID_RE.fullmatch(current):
        bad("current: missing or not 16 lowercase hex characters")
    if current not in keks:
        bad(f"current: key id {current} is not in keks")

    pepper = _b64_to_key(doc.get("pepper"))
    if pepper is None:
        bad("pepper: not 32 bytes of base64")
    if any(hmac.compare_digest(pepper, kek) for kek in keks.values()):
        bad("pepper: must differ from every key-encryption key")

    development = doc.get("development")
    if not isinstance(development, bool):
        bad("development: missing or not true/false")

    created_at = doc.get("created_at")
    if not isinstance(created_at, str):
        bad("created_at: missing or not a string")
    try:
        datetime.fromisoformat(created_at)
    except ValueError:
        bad("created_at: not an ISO 8601 timestamp")

    keyring = KeyRing(
        current_kid=current,
        keks=keks,
        pepper=pepper,
        development=development,
        source=f"file {path}",
    )
    return _KeyFile(keyring=keyring, created_at=created_at)


def load_keyring(key_dir: Path, env: Mapping[str, str]) -> KeyRing:
    """Load the key ring from ``INTAKE_MASTER_KEY`` or from ``key_dir/keyring.json``.

    A non-empty ``INTAKE_MASTER_KEY`` takes precedence: it must be base64 (standard or urlsafe,
    padding optional) of 32 bytes, from which the KEK and the pepper are derived with
    HKDF-SHA256 (separate ``info`` labels); the kid is the first 16 hex chars of SHA-256(KEK).

    Args:
        key_dir: Directory holding ``keyring.json``.
        env: Environment mapping (usually ``os.environ``).

    Returns:
        A validated key ring.

    Raises:
        KeyFileError: If the key material is missing, unreadable, readable by group/others or
            malformed; the message names the file or variable, the problem and the fix.
    """
    from_env = _keyring_from_env(env)
    if from_env is not None:
        return from_env
    return _read_key_file(Path(key_dir)).keyring


# --------------------------------------------------------------------------------------------
# Key file writing
# --------------------------------------------------------------------------------------------


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _serialise(keyring: KeyRing, created_at: str) -> bytes:
    doc = {
        "format": FORMAT_VERSION,
        "current": keyring.current_kid,
        "keks": {kid: _b64(kek) for kid, kek in keyring.keks.items()},
        "pepper": _b64(keyring.pepper),
        "development": keyring.development,
        "created_at": created_at,
    }
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode("utf-8")


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _locked_dir(directory: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``directory`` (serialises writers of the key file)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _write_atomically(path: Path, content: bytes, *, overwrite: bool) -> None:
    """Write ``content`` to ``path`` with mode 0600 via a fsynced temp file in the same dir.

    With ``overwrite=False`` the temp file is hard-linked into place, which fails instead of
    replacing a key file created concurrently (raising :class:`_KeyFileExistsError`).
    """
    directory = path.parent
    tmp = directory / f".{path.name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)
            view = memoryview(content)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise _KeyFileExistsError(
                    f"refusing to overwrite existing key file {path}"
                ) from None
            except OSError:
                # Filesystem without hard links: fall back to check-then-replace.
                if os.path.lexists(path):
                    raise _KeyFileExistsError(
                        f"refusing to overwrite existing key file {path}"
                    ) from None
                os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    _fsync_dir(directory)


def _ensure_key_dir(key_dir: Path) -> None:
    if key_dir.exists():
        if not key_dir.is_dir():
            raise KeyFileError(f"key directory {key_dir} exists but is not a directory")
        return
    key_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(key_dir, 0o700)


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def create_keyring(key_dir: Path, *, development: bool) -> KeyRing:
    """Create ``key_dir/keyring.json`` with a fresh random KEK and pepper.

    ``key_dir`` is created with mode 0700 if missing. The file is written with mode 0600,
    atomically (fsynced temp file in the same directory, moved into place, directory
    fsynced), and never replaces an existing key file, even one created concurrently.

    Args:
        key_dir: Directory for the key file.
        development: Mark the keys as auto-generated development keys.

    Returns:
        The new key ring (``current_kid`` is 16 random hex chars).

    Raises:
        KeyFileError: If ``keyring.json`` already exists or cannot be written.
    """
    key_dir = Path(key_dir)
    path = key_dir / KEYRING_FILE
    try:
        _ensure_key_dir(key_dir)
        if os.path.lexists(path):
            raise _KeyFileExistsError(f"refusing to overwrite existing key file {path}")
        kid = secrets.token_hex(_KID_LEN)
        keyring = KeyRing(
            current_kid=kid,
            keks={kid: secrets.token_bytes(_KEY_LEN)},
            pepper=secrets.token_bytes(_KEY_LEN),
            development=development,
            source=f"file {path}",
        )
        _write_atomically(path, _serialise(keyring, _now_iso()), overwrite=False)
    except _KeyFileExistsError as exc:
        raise _KeyFileExistsError(
            f"{exc}; it may hold the only keys to existing data. To replace it, move it away "
            f"first (keep a backup), or use `intake keys rotate` to add a new key"
        ) from None
    except OSError as exc:
        raise KeyFileError(f"cannot create key file {path}: {exc.strerror}") from None
    return keyring


def ensure_development_keyring(key_dir: Path, env: Mapping[str, str]) -> tuple[KeyRing, bool]:
    """Load existing keys, or create development keys if there are none.

    Args:
        key_dir: Directory for the key file.
        env: Environment mapping (usually ``os.environ``).

    Returns:
        ``(keyring, created)``: ``created`` is True only if this call wrote a new development
        key file. Concurrent first calls never overwrite each other's key file.

    Raises:
        KeyFileError: As :func:`load_keyring` / :func:`create_keyring`.
    """
    key_dir = Path(key_dir)
    if env.get(MASTER_KEY_ENV) or os.path.lexists(key_dir / KEYRING_FILE):
        return load_keyring(key_dir, env), False
    try:
        return create_keyring(key_dir, development=True), True
    except _KeyFileExistsError:
        return load_keyring(key_dir, env), False


def rotate_kek(key_dir: Path) -> KeyRing:
    """Add a new random KEK to ``key_dir/keyring.json`` and make it current.

    Old KEKs are kept, so keys wrapped under them still unwrap; use :meth:`KeyRing.rewrap` to
    move wrapped keys to the new KEK. The file is rewritten atomically with mode 0600 under an
    exclusive lock on ``key_dir``. ``INTAKE_MASTER_KEY`` is ignored: this always rotates the
    file.

    Args:
        key_dir: Directory holding ``keyring.json``.

    Returns:
        The rotated key ring.

    Raises:
        KeyFileError: If there is no key file (keys from ``INTAKE_MASTER_KEY`` cannot be
            rotated this way), or it is unreadable, too widely readable or malformed.
    """
    key_dir = Path(key_dir)
    path = key_dir / KEYRING_FILE
    if not os.path.lexists(path):
        raise KeyFileError(
            f"no key file at {path} to rotate; keys derived from {MASTER_KEY_ENV} cannot be "
            f"rotated this way (changing the variable would make existing data unreadable). "
            f"Create a key file with `intake keys init --dir {key_dir}`"
        )
    try:
        with _locked_dir(key_dir):
            current = _read_key_file(key_dir)
            old = current.keyring
            kid = secrets.token_hex(_KID_LEN)
            while kid in old.keks:
                kid = secrets.token_hex(_KID_LEN)
            keyring = KeyRing(
                current_kid=kid,
                keks={**old.keks, kid: secrets.token_bytes(_KEY_LEN)},
                pepper=old.pepper,
                development=old.development,
                source=old.source,
            )
            _write_atomically(path, _serialise(keyring, current.created_at), overwrite=True)
    except OSError as exc:
        raise KeyFileError(f"cannot rotate key file {path}: {exc.strerror}") from None
    return keyring
