"""Unit tests for db.crypto: envelope encryption, key files and pseudonyms."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import pickle
import secrets
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from db.crypto import (
    FORMAT_VERSION,
    KEYRING_FILE,
    MASTER_KEY_ENV,
    CryptoError,
    DataKey,
    DecryptionError,
    KeyFileError,
    KeyRing,
    create_keyring,
    ensure_development_keyring,
    field_context,
    load_keyring,
    rotate_kek,
)

SETTINGS = settings(database=None, deadline=None)
CANARY = "CANARY-the-witness-lives-at-42-olive-street-do-not-leak-" * 4
CTX = field_context("case", "narrative", "0a1b2c3d4e5f")
HEADER_LEN = 10
NONCE_LEN = 12
TAG_LEN = 16

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
row_ids = st.text(alphabet="0123456789abcdef", min_size=1, max_size=32)


def make_ring(*, extra_keks: int = 0, source: str = "test ring") -> KeyRing:
    """Build an in-memory key ring with random keys."""
    kid = secrets.token_hex(8)
    keks = {kid: secrets.token_bytes(32)}
    for _ in range(extra_keks):
        keks[secrets.token_hex(8)] = secrets.token_bytes(32)
    return KeyRing(
        current_kid=kid, keks=keks, pepper=secrets.token_bytes(32), development=True, source=source
    )


RING = make_ring()
KEY = DataKey.generate()


def secret_spellings(raw: bytes) -> list[str]:
    """All the textual forms in which key bytes might leak."""
    return [
        raw.hex(),
        raw.hex().upper(),
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode(),
        base64.b64encode(raw).decode().rstrip("="),
        repr(raw),
    ]


def assert_no_secret(text: str, *raws: bytes) -> None:
    """Fail if ``text`` contains any spelling of any of ``raws``."""
    for raw in raws:
        for spelling in secret_spellings(raw):
            assert spelling not in text


def flip(blob: bytes, index: int, mask: int) -> bytes:
    """Return ``blob`` with the byte at ``index`` XORed with ``mask``."""
    mutable = bytearray(blob)
    mutable[index] ^= mask
    return bytes(mutable)


def write_keyfile(key_dir: Path, doc: dict[str, Any]) -> Path:
    """Write a key file document with mode 0600 and return its path."""
    key_dir.mkdir(mode=0o700, exist_ok=True)
    path = key_dir / KEYRING_FILE
    path.write_text(json.dumps(doc))
    path.chmod(0o600)
    return path


def valid_doc() -> dict[str, Any]:
    """A well-formed key file document."""
    kid = secrets.token_hex(8)
    return {
        "format": 1,
        "current": kid,
        "keks": {kid: base64.b64encode(secrets.token_bytes(32)).decode()},
        "pepper": base64.b64encode(secrets.token_bytes(32)).decode(),
        "development": False,
        "created_at": "2025-01-02T03:04:05Z",
    }


# ------------------------------------------------------------------------------- field_context


def test_field_context_joins_parts() -> None:
    """field_context joins table, column and row id with dots."""
    assert field_context("case", "narrative", "00ff") == "case.narrative.00ff"


@pytest.mark.parametrize(
    ("table", "column", "row_id"),
    [
        ("", "c", "1"),
        ("t", "", "1"),
        ("t", "c", ""),
        ("t.x", "c", "1"),
        ("t", "c|x", "1"),
        ("t", "c", "1 2"),
        ("t", "c", "1\n"),
        ("t", "c\t", "1"),
    ],
)
def test_field_context_rejects_bad_parts(table: str, column: str, row_id: str) -> None:
    """field_context rejects empty parts and parts containing '.', '|' or whitespace."""
    with pytest.raises(ValueError):
        field_context(table, column, row_id)


# ---------------------------------------------------------------------------------- round trips


@SETTINGS
@given(plaintext=st.binary(max_size=2048), row_id=row_ids)
def test_bytes_round_trip(plaintext: bytes, row_id: str) -> None:
    """Bytes encrypted under a context decrypt to the same bytes under that context."""
    ctx = field_context("message", "body", row_id)
    assert KEY.decrypt(KEY.encrypt(plaintext, ctx), ctx) == plaintext


@SETTINGS
@given(
    text=st.text(max_size=500)
    | st.sampled_from(["مرحبا بالعالم", "שלום עולם", "🆘🏳️‍🌈👩🏽‍⚖️", "\u202eevil\u202c", "", "\x00"])
)
def test_text_round_trip(text: str) -> None:
    """Any unicode text (RTL, emoji, control characters) survives encrypt_text/decrypt_text."""
    assert KEY.decrypt_text(KEY.encrypt_text(text, CTX), CTX) == text


@SETTINGS
@given(value=json_values)
def test_json_round_trip(value: object) -> None:
    """JSON values (dicts of text/ints/lists/None) survive encrypt_json/decrypt_json."""
    assert KEY.decrypt_json(KEY.encrypt_json(value, CTX), CTX) == value


def test_encrypt_json_is_canonical() -> None:
    """encrypt_json serialises compactly with sorted keys and raw non-ASCII."""
    blob = KEY.encrypt_json({"b": 1, "a": ["é", None]}, CTX)
    assert KEY.decrypt(blob, CTX) == '{"a":["é",null],"b":1}'.encode()


def test_encrypt_json_rejects_nan() -> None:
    """encrypt_json refuses NaN, which is not valid JSON."""
    with pytest.raises(ValueError):
        KEY.encrypt_json({"x": float("nan")}, CTX)


def test_encrypt_text_lone_surrogate_error_hides_text() -> None:
    """Unencodable text raises ValueError whose message and context omit the text."""
    with pytest.raises(ValueError) as info:
        KEY.encrypt_text(CANARY + "\ud800", CTX)
    assert CANARY not in str(info.value)
    assert info.value.__context__ is None


@SETTINGS
@given(plaintext=st.binary(max_size=512), row_id=row_ids)
def test_wrap_unwrap_round_trip(plaintext: bytes, row_id: str) -> None:
    """An unwrapped data key decrypts data encrypted by the original key."""
    ctx = field_context("case", "key", row_id)
    data_key, wrapped = RING.new_data_key(ctx)
    blob = data_key.encrypt(plaintext, CTX)
    unwrapped = RING.unwrap(wrapped, ctx)
    assert unwrapped.kid == data_key.kid
    assert unwrapped == data_key
    assert unwrapped.decrypt(blob, CTX) == plaintext


def test_blob_layout() -> None:
    """Data blobs and wrapped keys carry version, kind, kid and nonce headers of fixed size."""
    blob = KEY.encrypt(b"abc", CTX)
    assert blob[0] == FORMAT_VERSION
    assert blob[1] == 0x01
    assert blob[2:10] == KEY.kid
    assert len(blob) == HEADER_LEN + NONCE_LEN + 3 + TAG_LEN
    _, wrapped = RING.new_data_key("case.key.01")
    assert wrapped[0] == FORMAT_VERSION
    assert wrapped[1] == 0x02
    assert wrapped[2:10] == bytes.fromhex(RING.current_kid)
    assert len(wrapped) == HEADER_LEN + NONCE_LEN + 40 + TAG_LEN


def test_data_keys_are_random() -> None:
    """Two generated data keys differ in kid and key."""
    a, b = DataKey.generate(), DataKey.generate()
    assert a.kid != b.kid
    assert a != b
    assert len(a.kid) == 8


# ------------------------------------------------------------------------------------ tampering


@SETTINGS
@given(data=st.data(), plaintext=st.binary(max_size=64), mask=st.integers(1, 255))
def test_flipping_any_byte_of_data_blob_fails(
    data: st.DataObject, plaintext: bytes, mask: int
) -> None:
    """Changing any single byte of a data blob makes decryption raise DecryptionError."""
    blob = KEY.encrypt(plaintext, CTX)
    index = data.draw(st.integers(0, len(blob) - 1))
    with pytest.raises(DecryptionError):
        KEY.decrypt(flip(blob, index, mask), CTX)


@SETTINGS
@given(data=st.data(), mask=st.integers(1, 255))
def test_flipping_any_byte_of_wrapped_key_fails(data: st.DataObject, mask: int) -> None:
    """Changing any single byte of a wrapped key makes unwrap raise DecryptionError."""
    _, wrapped = RING.new_data_key("case.key.01")
    index = data.draw(st.integers(0, len(wrapped) - 1))
    with pytest.raises(DecryptionError):
        RING.unwrap(flip(wrapped, index, mask), "case.key.01")


@SETTINGS
@given(data=st.data(), plaintext=st.binary(max_size=64))
def test_truncated_data_blob_fails(data: st.DataObject, plaintext: bytes) -> None:
    """Any strict prefix of a data blob raises DecryptionError."""
    blob = KEY.encrypt(plaintext, CTX)
    cut = data.draw(st.integers(0, len(blob) - 1))
    with pytest.raises(DecryptionError):
        KEY.decrypt(blob[:cut], CTX)


@SETTINGS
@given(data=st.data())
def test_truncated_or_extended_wrapped_key_fails(data: st.DataObject) -> None:
    """Any strict prefix of a wrapped key, or one with bytes appended, raises DecryptionError."""
    _, wrapped = RING.new_data_key("case.key.01")
    cut = data.draw(st.integers(0, len(wrapped) - 1))
    with pytest.raises(DecryptionError):
        RING.unwrap(wrapped[:cut], "case.key.01")
    with pytest.raises(DecryptionError):
        RING.unwrap(wrapped + b"\x00", "case.key.01")


def test_unknown_version_byte_fails() -> None:
    """A blob with an unknown format version raises DecryptionError naming the version."""
    blob = KEY.encrypt(b"hello", CTX)
    with pytest.raises(DecryptionError, match="version 2"):
        KEY.decrypt(bytes([2]) + blob[1:], CTX)
    _, wrapped = RING.new_data_key("case.key.01")
    with pytest.raises(DecryptionError, match="version 0"):
        RING.unwrap(bytes([0]) + wrapped[1:], "case.key.01")


def test_wrong_kind_fails() -> None:
    """A wrapped key cannot be decrypted as data and a data blob cannot be unwrapped."""
    _, wrapped = RING.new_data_key("case.key.01")
    with pytest.raises(DecryptionError, match="kind"):
        KEY.decrypt(wrapped, "case.key.01")
    with pytest.raises(DecryptionError, match="kind"):
        RING.unwrap(KEY.encrypt(b"x" * 40, CTX), CTX)


# ------------------------------------------------------------------------------ context binding


@pytest.mark.parametrize(
    "other",
    [
        field_context("case", "narrative", "0a1b2c3d4e5e"),
        field_context("case", "summary", "0a1b2c3d4e5f"),
        field_context("message", "narrative", "0a1b2c3d4e5f"),
    ],
)
def test_decrypt_with_other_context_fails(other: str) -> None:
    """A data blob does not decrypt under another row id, column or table."""
    blob = KEY.encrypt(CANARY.encode(), CTX)
    with pytest.raises(DecryptionError, match="authentication failed"):
        KEY.decrypt(blob, other)


@pytest.mark.parametrize(
    "other",
    ["case.key.02", "case.oldkey.01", "conversation.key.01"],
)
def test_unwrap_with_other_context_fails(other: str) -> None:
    """A wrapped key does not unwrap under another row id, column or table."""
    _, wrapped = RING.new_data_key("case.key.01")
    with pytest.raises(DecryptionError, match="authentication failed"):
        RING.unwrap(wrapped, other)


def test_empty_context_is_rejected() -> None:
    """Encrypting with an empty context is a programming error."""
    with pytest.raises(ValueError):
        KEY.encrypt(b"x", "")


# ------------------------------------------------------------------------------------ wrong keys


def test_wrong_data_key_fails() -> None:
    """A blob made with one data key raises DecryptionError under another data key."""
    blob = KEY.encrypt(b"secret", CTX)
    with pytest.raises(DecryptionError, match="another data key"):
        DataKey.generate().decrypt(blob, CTX)


def test_same_kid_different_key_fails() -> None:
    """A data key with the right kid but wrong key bytes fails authentication."""
    blob = KEY.encrypt(b"secret", CTX)
    impostor = DataKey(secrets.token_bytes(32), KEY.kid)
    with pytest.raises(DecryptionError, match="authentication failed"):
        impostor.decrypt(blob, CTX)


def test_unknown_kek_kid_fails_naming_kid() -> None:
    """Unwrapping under a ring without the KEK raises DecryptionError naming kid and source."""
    _, wrapped = RING.new_data_key("case.key.01")
    other = make_ring(source="file /elsewhere/keyring.json")
    with pytest.raises(DecryptionError) as info:
        other.unwrap(wrapped, "case.key.01")
    assert RING.current_kid in str(info.value)
    assert "file /elsewhere/keyring.json" in str(info.value)


def test_same_kek_kid_different_kek_fails() -> None:
    """A ring with the same kek kid but different key bytes fails authentication."""
    _, wrapped = RING.new_data_key("case.key.01")
    impostor = KeyRing(
        current_kid=RING.current_kid,
        keks={RING.current_kid: secrets.token_bytes(32)},
        pepper=RING.pepper,
        development=True,
        source="impostor",
    )
    with pytest.raises(DecryptionError, match="authentication failed"):
        impostor.unwrap(wrapped, "case.key.01")


# ---------------------------------------------------------------------------------- randomness


def test_same_plaintext_gives_different_blobs() -> None:
    """Encrypting the same plaintext twice gives different blobs (random nonce)."""
    a = KEY.encrypt(CANARY.encode(), CTX)
    b = KEY.encrypt(CANARY.encode(), CTX)
    assert a != b
    assert a[HEADER_LEN : HEADER_LEN + NONCE_LEN] != b[HEADER_LEN : HEADER_LEN + NONCE_LEN]
    _, w1 = RING.new_data_key("case.key.01")
    _, w2 = RING.new_data_key("case.key.01")
    assert w1 != w2


def test_plaintext_never_appears_in_blob() -> None:
    """Neither the canary nor any 16-byte slice of it appears inside the ciphertext."""
    raw = CANARY.encode()
    for blob in (
        KEY.encrypt(raw, CTX),
        KEY.encrypt_text(CANARY, CTX),
        KEY.encrypt_json(CANARY, CTX),
    ):
        assert raw not in blob
        for start in range(0, len(raw) - 16, 7):
            assert raw[start : start + 16] not in blob


def test_wrapped_key_does_not_contain_key_bytes() -> None:
    """A wrapped key contains neither the data key bytes nor the KEK bytes."""
    data_key, wrapped = RING.new_data_key("case.key.01")
    assert data_key._key not in wrapped
    assert RING.keks[RING.current_kid] not in wrapped


# ------------------------------------------------------------------------------------- no leaks


def test_error_messages_never_contain_secrets() -> None:
    """DecryptionError messages name contexts but never plaintext, keys or ciphertext."""
    data_key, wrapped = RING.new_data_key("case.key.01")
    blob = data_key.encrypt(CANARY.encode(), CTX)
    errors: list[CryptoError] = []
    attempts: list[Callable[[], object]] = [
        lambda: data_key.decrypt(blob, "case.other.01"),
        lambda: data_key.decrypt(flip(blob, len(blob) - 1, 1), CTX),
        lambda: DataKey.generate().decrypt(blob, CTX),
        lambda: data_key.decrypt(blob[:20], CTX),
        lambda: RING.unwrap(wrapped, "case.key.02"),
        lambda: make_ring().unwrap(wrapped, "case.key.01"),
        lambda: data_key.decrypt_json(data_key.encrypt(CANARY.encode(), CTX), CTX),
        lambda: data_key.decrypt_text(data_key.encrypt(b"\xff" + CANARY.encode(), CTX), CTX),
    ]
    for attempt in attempts:
        with pytest.raises(DecryptionError) as info:
            attempt()
        errors.append(info.value)
    assert len(errors) == len(attempts)
    for exc in errors:
        text = f"{exc} {exc!r}"
        assert "CANARY" not in text
        assert_no_secret(text, data_key._key, RING.keks[RING.current_kid], blob[HEADER_LEN:])
        # The lower-level exception (which may hold the plaintext) is not kept around.
        assert exc.__cause__ is None
        assert exc.__context__ is None or not isinstance(exc.__context__, ValueError)


def test_reprs_never_reveal_keys() -> None:
    """repr/str of DataKey and KeyRing show kids but no key, KEK or pepper material."""
    ring = make_ring(extra_keks=2)
    data_key, _ = ring.new_data_key("case.key.01")
    for text in (repr(data_key), str(data_key), repr(ring), str(ring)):
        assert_no_secret(text, data_key._key, ring.pepper, *ring.keks.values())
    assert data_key.kid.hex() in repr(data_key)
    assert ring.current_kid in repr(ring)


def test_data_key_cannot_be_pickled_or_copied() -> None:
    """DataKey refuses pickling and copying so raw keys are not serialised by accident."""
    with pytest.raises(TypeError):
        pickle.dumps(KEY)
    with pytest.raises(TypeError):
        copy.copy(KEY)


def test_keyring_keks_are_immutable() -> None:
    """KeyRing.keks cannot be modified after construction, even via the original dict."""
    kid = secrets.token_hex(8)
    source = {kid: secrets.token_bytes(32)}
    ring = KeyRing(
        current_kid=kid, keks=source, pepper=secrets.token_bytes(32), development=False, source="x"
    )
    source[kid] = secrets.token_bytes(32)
    assert ring.keks[kid] != source[kid]
    with pytest.raises(TypeError):
        ring.keks[kid] = b"\x00" * 32  # type: ignore[index]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"current_kid": "ABCDEF0123456789"},
        {"current_kid": "0123"},
        {"current_kid": "0123456789abcdef"},
        {"pepper": b"short"},
        {"keks": {"0011223344556677": b"short"}},
    ],
)
def test_keyring_validates_fields(kwargs: dict[str, Any]) -> None:
    """KeyRing rejects malformed kids, short keys, short peppers and a current kid not in keks."""
    fields: dict[str, Any] = {
        "current_kid": "0011223344556677",
        "keks": {"0011223344556677": secrets.token_bytes(32)},
        "pepper": secrets.token_bytes(32),
        "development": False,
        "source": "x",
    }
    fields.update(kwargs)
    with pytest.raises(ValueError):
        KeyRing(**fields)


# ------------------------------------------------------------------------------------ key files


def test_create_keyring_writes_private_file(tmp_path: Path) -> None:
    """create_keyring writes a 0600 key file in a newly created 0700 directory."""
    key_dir = tmp_path / "keys"
    ring = create_keyring(key_dir, development=False)
    path = key_dir / KEYRING_FILE
    assert stat.S_IMODE(key_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(ring.current_kid) == 16
    assert set(ring.keks) == {ring.current_kid}
    assert len(ring.keks[ring.current_kid]) == 32
    assert len(ring.pepper) == 32
    assert ring.pepper != ring.keks[ring.current_kid]
    assert ring.source == f"file {path}"
    assert [p.name for p in key_dir.iterdir()] == [KEYRING_FILE]
    doc = json.loads(path.read_text())
    assert doc["format"] == 1
    assert doc["current"] == ring.current_kid
    assert doc["development"] is False
    assert doc["created_at"].endswith("Z")


def test_create_then_load_round_trips(tmp_path: Path) -> None:
    """A created key ring loads back identically and unwraps keys wrapped before saving."""
    created = create_keyring(tmp_path / "k", development=True)
    _, wrapped = created.new_data_key("case.key.01")
    loaded = load_keyring(tmp_path / "k", {})
    assert loaded == created
    assert loaded.development is True
    assert loaded.unwrap(wrapped, "case.key.01").kid == created.unwrap(wrapped, "case.key.01").kid


def test_create_refuses_existing_file(tmp_path: Path) -> None:
    """create_keyring refuses to overwrite an existing key file and leaves it intact."""
    create_keyring(tmp_path, development=False)
    before = (tmp_path / KEYRING_FILE).read_bytes()
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        create_keyring(tmp_path, development=False)
    assert (tmp_path / KEYRING_FILE).read_bytes() == before


def test_world_readable_file_is_refused(tmp_path: Path) -> None:
    """A key file readable by group/others raises KeyFileError with the path, mode and chmod fix."""
    create_keyring(tmp_path, development=False)
    path = tmp_path / KEYRING_FILE
    path.chmod(0o644)
    with pytest.raises(KeyFileError) as info:
        load_keyring(tmp_path, {})
    message = str(info.value)
    assert f"chmod 600 {path}" in message
    assert "0644" in message


def test_missing_file_message_explains_fix(tmp_path: Path) -> None:
    """A missing key file raises KeyFileError naming the path, `intake keys init` and the env."""
    with pytest.raises(KeyFileError) as info:
        load_keyring(tmp_path, {})
    message = str(info.value)
    assert str(tmp_path / KEYRING_FILE) in message
    assert f"intake keys init --dir {tmp_path}" in message
    assert MASTER_KEY_ENV in message


def _bad_b64_kek(doc: dict[str, Any]) -> str:
    doc["keks"][doc["current"]] = "!!!not base64!!!"
    return f"keks.{doc['current']}"


def _short_kek(doc: dict[str, Any]) -> str:
    doc["keks"][doc["current"]] = base64.b64encode(b"\x01" * 31).decode()
    return f"keks.{doc['current']}"


def _current_missing(doc: dict[str, Any]) -> str:
    doc["current"] = "ffffffffffffffff"
    return "current"


def _bad_pepper(doc: dict[str, Any]) -> str:
    doc["pepper"] = base64.b64encode(b"\x01" * 33).decode()
    return "pepper"


def _bad_format(doc: dict[str, Any]) -> str:
    doc["format"] = 2
    return "format"


def _bad_development(doc: dict[str, Any]) -> str:
    doc["development"] = "yes"
    return "development"


def _bad_created_at(doc: dict[str, Any]) -> str:
    doc["created_at"] = "yesterday"
    return "created_at"


def _bad_kid(doc: dict[str, Any]) -> str:
    doc["keks"]["NOT-A-KID"] = doc["pepper"]
    return "keks"


def _no_keks(doc: dict[str, Any]) -> str:
    del doc["keks"]
    return "keks"


def _extra_field(doc: dict[str, Any]) -> str:
    doc["pepeer"] = doc["pepper"]
    return "pepeer"


@pytest.mark.parametrize(
    "corrupt",
    [
        _bad_b64_kek,
        _short_kek,
        _current_missing,
        _bad_pepper,
        _bad_format,
        _bad_development,
        _bad_created_at,
        _bad_kid,
        _no_keks,
        _extra_field,
    ],
)
def test_malformed_field_names_field(tmp_path: Path, corrupt: Any) -> None:
    """Each malformed key file field raises KeyFileError naming the file and the field."""
    doc = valid_doc()
    secrets_in_doc = [base64.b64decode(v) for v in doc["keks"].values()]
    secrets_in_doc.append(base64.b64decode(doc["pepper"]))
    field_name = corrupt(doc)
    path = write_keyfile(tmp_path, doc)
    with pytest.raises(KeyFileError) as info:
        load_keyring(tmp_path, {})
    message = str(info.value)
    assert str(path) in message
    assert field_name in message
    assert_no_secret(message, *secrets_in_doc)


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b"\xff\xfe", b"null", b""])
def test_malformed_json_is_refused(tmp_path: Path, content: bytes) -> None:
    """A key file that is not a JSON object raises KeyFileError naming the file."""
    tmp_path.joinpath(KEYRING_FILE).write_bytes(content)
    tmp_path.joinpath(KEYRING_FILE).chmod(0o600)
    with pytest.raises(KeyFileError) as info:
        load_keyring(tmp_path, {})
    assert str(tmp_path / KEYRING_FILE) in str(info.value)
    assert info.value.__context__ is None


def test_key_file_accepts_urlsafe_unpadded_base64(tmp_path: Path) -> None:
    """Key file keys may use urlsafe base64 without padding."""
    doc = valid_doc()
    kek = b"\xfb\xff" * 16
    doc["keks"][doc["current"]] = base64.urlsafe_b64encode(kek).decode().rstrip("=")
    write_keyfile(tmp_path, doc)
    assert load_keyring(tmp_path, {}).keks[doc["current"]] == kek


# ---------------------------------------------------------------------------- env master key


def test_env_master_key_loads() -> None:
    """A valid INTAKE_MASTER_KEY gives a deterministic, non-development ring per the HKDF spec."""
    master = bytes(range(32))
    env = {MASTER_KEY_ENV: base64.b64encode(master).decode()}
    ring = load_keyring(Path("/nonexistent"), env)
    again = load_keyring(Path("/nonexistent"), env)
    assert ring.development is False
    assert ring.current_kid == again.current_kid
    assert ring.keks == again.keks
    assert ring.pepper == again.pepper
    kek = ring.keks[ring.current_kid]
    assert ring.current_kid == hashlib.sha256(kek).hexdigest()[:16]
    assert kek != ring.pepper
    assert master not in (kek, ring.pepper)
    assert MASTER_KEY_ENV in ring.source
    other = load_keyring(
        Path("/nonexistent"), {MASTER_KEY_ENV: base64.b64encode(b"\x01" * 32).decode()}
    )
    assert other.current_kid != ring.current_kid


def test_env_master_key_accepts_urlsafe_unpadded() -> None:
    """Standard and urlsafe unpadded encodings of the same master key give the same ring."""
    master = b"\xfb\xef\xff" * 10 + b"\xfe\xfd"
    std = load_keyring(Path("/x"), {MASTER_KEY_ENV: base64.b64encode(master).decode()})
    url = base64.urlsafe_b64encode(master).decode().rstrip("=")
    assert "-" in url or "_" in url
    assert load_keyring(Path("/x"), {MASTER_KEY_ENV: url}) == std


@pytest.mark.parametrize(
    "value",
    [
        base64.b64encode(b"\x01" * 31).decode(),
        base64.b64encode(b"\x01" * 33).decode(),
        "not base64 at all!",
        "   ",
        "a",
    ],
)
def test_env_master_key_invalid(value: str) -> None:
    """A malformed INTAKE_MASTER_KEY raises KeyFileError naming the variable and how to make one."""
    with pytest.raises(KeyFileError) as info:
        load_keyring(Path("/nonexistent"), {MASTER_KEY_ENV: value})
    message = str(info.value)
    assert MASTER_KEY_ENV in message
    assert "secrets.token_bytes(32)" in message
    if len(value.strip()) > 8:
        assert value not in message


def test_env_takes_precedence_over_file(tmp_path: Path) -> None:
    """When INTAKE_MASTER_KEY is set the key file is ignored."""
    file_ring = create_keyring(tmp_path, development=True)
    env = {MASTER_KEY_ENV: base64.b64encode(b"\x07" * 32).decode()}
    ring = load_keyring(tmp_path, env)
    assert ring.current_kid != file_ring.current_kid
    assert ring.development is False


def test_empty_env_falls_back_to_file(tmp_path: Path) -> None:
    """An empty INTAKE_MASTER_KEY is treated as unset."""
    file_ring = create_keyring(tmp_path, development=True)
    assert load_keyring(tmp_path, {MASTER_KEY_ENV: ""}) == file_ring


# ------------------------------------------------------------------------------------ rotation


def test_rotate_kek(tmp_path: Path) -> None:
    """Rotation adds a current KEK, keeps old ones, and rewrap moves keys to the new KEK."""
    old_ring = create_keyring(tmp_path, development=False)
    data_key, wrapped = old_ring.new_data_key("case.key.01")
    blob = data_key.encrypt(CANARY.encode(), CTX)

    new_ring = rotate_kek(tmp_path)
    assert new_ring.current_kid != old_ring.current_kid
    assert set(new_ring.keks) == {old_ring.current_kid, new_ring.current_kid}
    assert new_ring.pepper == old_ring.pepper
    assert stat.S_IMODE((tmp_path / KEYRING_FILE).stat().st_mode) == 0o600
    assert load_keyring(tmp_path, {}) == new_ring
    assert [p.name for p in tmp_path.iterdir()] == [KEYRING_FILE]

    assert new_ring.unwrap(wrapped, "case.key.01") == data_key
    rewrapped = new_ring.rewrap(wrapped, "case.key.01")
    assert rewrapped[2:10] == bytes.fromhex(new_ring.current_kid)
    moved = new_ring.unwrap(rewrapped, "case.key.01")
    assert moved.kid == data_key.kid
    assert moved.decrypt(blob, CTX) == CANARY.encode()
    with pytest.raises(DecryptionError, match=new_ring.current_kid):
        old_ring.unwrap(rewrapped, "case.key.01")

    third = rotate_kek(tmp_path)
    assert len(third.keks) == 3
    assert third.unwrap(wrapped, "case.key.01") == data_key


def test_rewrap_checks_context() -> None:
    """rewrap refuses a wrapped key presented under the wrong context."""
    _, wrapped = RING.new_data_key("case.key.01")
    with pytest.raises(DecryptionError):
        RING.rewrap(wrapped, "case.key.02")


def test_rotate_without_file_explains_env_keys(tmp_path: Path) -> None:
    """Rotating without a key file raises KeyFileError saying env keys cannot be rotated so."""
    with pytest.raises(KeyFileError) as info:
        rotate_kek(tmp_path)
    assert MASTER_KEY_ENV in str(info.value)
    assert "cannot be rotated" in str(info.value)


def test_rotate_refuses_world_readable_file(tmp_path: Path) -> None:
    """Rotation refuses a key file with unsafe permissions and leaves it unchanged."""
    create_keyring(tmp_path, development=False)
    path = tmp_path / KEYRING_FILE
    path.chmod(0o640)
    before = path.read_bytes()
    with pytest.raises(KeyFileError, match="chmod 600"):
        rotate_kek(tmp_path)
    assert path.read_bytes() == before


# ----------------------------------------------------------------------- development keyring


def test_ensure_development_keyring(tmp_path: Path) -> None:
    """The first call creates development keys; the second loads the same keys."""
    key_dir = tmp_path / "dev"
    first, created = ensure_development_keyring(key_dir, {})
    assert created is True
    assert first.development is True
    second, created_again = ensure_development_keyring(key_dir, {})
    assert created_again is False
    assert second == first


def test_ensure_development_keyring_prefers_env(tmp_path: Path) -> None:
    """With INTAKE_MASTER_KEY set, no file is created and the env keys are returned."""
    env = {MASTER_KEY_ENV: base64.b64encode(os.urandom(32)).decode()}
    ring, created = ensure_development_keyring(tmp_path / "dev", env)
    assert created is False
    assert ring.development is False
    assert not (tmp_path / "dev").exists()


# ------------------------------------------------------------------------------------ pseudonym


@SETTINGS
@given(kind=st.text(min_size=1).filter(lambda k: "\x00" not in k), value=st.text())
def test_pseudonym_is_deterministic_hex(kind: str, value: str) -> None:
    """pseudonym is deterministic and returns 64 lowercase hex characters."""
    try:
        first = RING.pseudonym(kind, value)
    except ValueError:
        # Lone surrogates cannot be encoded; nothing else may fail.
        assert any(0xD800 <= ord(c) <= 0xDFFF for c in kind + value)
        return
    assert first == RING.pseudonym(kind, value)
    assert len(first) == 64
    assert all(c in "0123456789abcdef" for c in first)


def test_pseudonym_matches_spec() -> None:
    """pseudonym equals HMAC-SHA256(pepper, prefix + kind + NUL + value)."""
    import hmac

    expected = hmac.new(
        RING.pepper, b"defender-intake|pseudonym|v1|phone\x00+15550100", hashlib.sha256
    ).hexdigest()
    assert RING.pseudonym("phone", "+15550100") == expected


def test_pseudonym_differs_by_kind_value_and_pepper() -> None:
    """Different kinds, values or peppers give different pseudonyms."""
    base = RING.pseudonym("telegram", "123456")
    assert RING.pseudonym("phone", "123456") != base
    assert RING.pseudonym("telegram", "123457") != base
    assert make_ring().pseudonym("telegram", "123456") != base


def test_pseudonym_rejects_ambiguous_kind() -> None:
    """A kind that is empty or contains NUL is rejected to keep the encoding unambiguous."""
    with pytest.raises(ValueError):
        RING.pseudonym("", "x")
    with pytest.raises(ValueError):
        RING.pseudonym("a\x00b", "c")


def _hkdf_sha256(ikm: bytes, info: bytes) -> bytes:
    """Independent RFC 5869 HKDF-SHA256 (no salt, 32-byte output) using only the stdlib."""
    import hmac

    prk = hmac.new(b"\x00" * 32, ikm, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()


def test_env_master_key_derivation_matches_spec() -> None:
    """KEK, pepper and kid from INTAKE_MASTER_KEY follow the documented HKDF-SHA256 labels."""
    master = secrets.token_bytes(32)
    ring = load_keyring(Path("/nonexistent"), {MASTER_KEY_ENV: base64.b64encode(master).decode()})
    kek = _hkdf_sha256(master, b"defender-intake kek v1")
    assert ring.current_kid == hashlib.sha256(kek).hexdigest()[:16]
    assert ring.keks == {ring.current_kid: kek}
    assert ring.pepper == _hkdf_sha256(master, b"defender-intake pepper v1")


def test_create_never_replaces_file_created_concurrently(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If another process creates the key file after the existence check, it is not replaced."""
    first = create_keyring(tmp_path, development=True)
    before = (tmp_path / KEYRING_FILE).read_bytes()
    monkeypatch.setattr(os.path, "lexists", lambda _path: False)
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        create_keyring(tmp_path, development=True)
    ring, created = ensure_development_keyring(tmp_path, {})
    monkeypatch.undo()
    assert created is False
    assert ring == first
    assert (tmp_path / KEYRING_FILE).read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [KEYRING_FILE]
