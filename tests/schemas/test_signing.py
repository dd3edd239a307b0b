"""Ed25519 signing and verification of ControlState records, and the key files."""

from __future__ import annotations

import base64
import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agentwatch.config import Settings
from agentwatch.schemas import ControlState
from agentwatch.schemas.signing import (
    SIGNING_CONTEXT,
    ControlSigner,
    ControlVerifier,
    SigningKeyError,
    VerificationError,
    canonical_bytes,
    ensure_key_pair,
    key_id_of,
    load_public_key,
    signer_from_settings,
    verifier_from_settings,
)


def state(**fields: object) -> ControlState:
    values: dict[str, object] = {
        "agent_id": "bot-1",
        "halted": True,
        "revoked": ["send_email"],
        "reason": "runaway \u2014 40\u00d7 baseline",
        "incident_id": "inc-1",
        "updated_at": datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC),
        "updated_by": "alice",
        "version": 1_767_268_800_123,
    }
    values.update(fields)
    return ControlState(**values)  # type: ignore[arg-type]


def reason(verifier: ControlVerifier, record: ControlState) -> str:
    with pytest.raises(VerificationError) as raised:
        verifier.verify(record)
    return raised.value.reason


def test_sign_and_verify_round_trip_through_the_wire() -> None:
    signer = ControlSigner.generate()
    signed = signer.sign(state())
    wire = signed.model_dump_json().encode()
    received = ControlState.model_validate_json(wire)
    ControlVerifier([signer.public_key]).verify(received)
    assert received.key_id == signer.key_id and received == signed


def test_the_signature_covers_every_field_and_the_key_id() -> None:
    signer = ControlSigner.generate()
    verifier = ControlVerifier([signer.public_key])
    signed = signer.sign(state())
    changes: dict[str, object] = {
        "agent_id": "bot-2",
        "halted": False,
        "revoked": [],
        "reason": "x",
        "incident_id": None,
        "updated_at": datetime(2026, 1, 1, tzinfo=UTC),
        "updated_by": "mallory",
        "version": signed.version + 1,
    }
    for field, value in changes.items():
        tampered = signed.model_copy(update={field: value})
        assert reason(verifier, tampered) == "bad_signature", field
    other = ControlSigner.generate()
    relabelled = signed.model_copy(update={"key_id": other.key_id})
    assert reason(ControlVerifier([signer.public_key, other.public_key]), relabelled) == (
        "bad_signature"
    )


def test_unsigned_foreign_and_garbage_signatures_are_refused() -> None:
    signer, stranger = ControlSigner.generate(), ControlSigner.generate()
    verifier = ControlVerifier([signer.public_key])
    assert reason(verifier, state()) == "unsigned"
    assert reason(verifier, stranger.sign(state())) == "unknown_key"
    # the stranger's signature under our key id
    forged = stranger.sign(state()).model_copy(update={"key_id": signer.key_id})
    assert reason(verifier, forged) == "bad_signature"
    zeros = signer.sign(state()).model_copy(update={"signature": "A" * 86})
    assert reason(verifier, zeros) == "bad_signature"
    only_sig = signer.sign(state()).model_copy(update={"key_id": None})
    assert reason(verifier, only_sig) == "unsigned"


def test_rotation_accepts_old_and_new_key() -> None:
    old, new = ControlSigner.generate(), ControlSigner.generate()
    both = ControlVerifier([old.public_key, new.public_key])
    both.verify(old.sign(state()))
    both.verify(new.sign(state()))
    assert sorted(both.keys) == sorted([old.key_id, new.key_id])
    assert reason(ControlVerifier([new.public_key]), old.sign(state())) == "unknown_key"


def test_canonical_encoding_is_the_documented_one() -> None:
    signer = ControlSigner.generate()
    signed = signer.sign(state())
    message = canonical_bytes(signed)
    assert message.startswith(SIGNING_CONTEXT)
    doc = orjson.loads(message[len(SIGNING_CONTEXT) :])
    assert "signature" not in doc and doc["key_id"] == signer.key_id
    assert list(doc) == sorted(doc)
    assert b" " not in message.replace(b"runaway \xe2\x80\x94 40\xc3\x97 baseline", b"")
    assert "runaway \u2014 40\u00d7 baseline".encode() in message  # raw UTF-8, not \\u escapes
    assert doc["updated_at"] == "2026-01-01T12:00:00.123456Z"
    # an independent Ed25519 implementation checks the same bytes (OpenSSL via cryptography)
    raw_sig = base64.urlsafe_b64decode(signed.signature + "==")  # type: ignore[operator]
    signer.public_key.verify(raw_sig, message)


def test_key_id_is_sha256_prefix_of_the_raw_public_key() -> None:
    import hashlib

    signer = ControlSigner.generate()
    raw = signer.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert signer.key_id == key_id_of(signer.public_key) == hashlib.sha256(raw).hexdigest()[:16]


def test_key_pair_files_are_made_once_with_private_mode(tmp_path: Path) -> None:
    private, public, created = ensure_key_pair(tmp_path / "keys")
    assert created
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert b"BEGIN PRIVATE KEY" in private.read_bytes()
    assert b"BEGIN PUBLIC KEY" in public.read_bytes()
    first = private.read_bytes()
    again = ensure_key_pair(tmp_path / "keys")
    assert again == (private, public, False) and private.read_bytes() == first
    signer = ControlSigner.from_file(private)
    assert key_id_of(load_public_key(str(public))) == signer.key_id
    public.unlink()  # written again from the private key
    ensure_key_pair(tmp_path / "keys")
    assert key_id_of(load_public_key(str(public))) == signer.key_id


def test_a_mismatched_public_key_file_is_reported(tmp_path: Path) -> None:
    _, public, _ = ensure_key_pair(tmp_path)
    public.write_bytes(ControlSigner.generate().public_pem())
    with pytest.raises(SigningKeyError, match="does not belong"):
        ensure_key_pair(tmp_path)


def test_a_private_key_others_can_read_is_refused(tmp_path: Path) -> None:
    private, _, _ = ensure_key_pair(tmp_path)
    os.chmod(private, 0o644)
    with pytest.raises(SigningKeyError, match="chmod 600"):
        ControlSigner.from_file(private)
    with pytest.raises(SigningKeyError, match=r"not found.*agentwatch keys generate"):
        ControlSigner.from_file(tmp_path / "missing.key")


def test_openssl_style_keys_and_inline_forms_load(tmp_path: Path) -> None:
    signer = ControlSigner.generate()
    raw_pub = signer.public_key.public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    for spec in (
        signer.public_pem().decode(),
        base64.b64encode(raw_pub).decode(),
        base64.urlsafe_b64encode(raw_pub).decode().rstrip("="),
    ):
        assert key_id_of(load_public_key(spec)) == signer.key_id
    inline = ControlSigner.from_text(signer.private_pem().decode())
    assert inline.key_id == signer.key_id
    with pytest.raises(SigningKeyError, match="not an Ed25519 private key"):
        ControlSigner.from_text("bm90IGEga2V5")
    with pytest.raises(SigningKeyError, match="neither a key file nor"):
        load_public_key(str(tmp_path / "nope.pub"))
    assert isinstance(load_public_key(signer.public_pem().decode()), Ed25519PublicKey)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ec_pem = ec_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(SigningKeyError, match="not Ed25519"):
        load_public_key(ec_pem.decode())
    ec_private = ec_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(SigningKeyError, match="not Ed25519"):
        ControlSigner.from_text(ec_private.decode())


def test_settings_resolve_keys_and_refuse_to_sign_without_one(tmp_path: Path) -> None:
    empty = Settings(data_dir=tmp_path / "empty")  # type: ignore[arg-type]
    with pytest.raises(SigningKeyError, match="agentwatch keys generate DIR"):
        signer_from_settings(empty)
    assert verifier_from_settings(empty) is None
    _, public, _ = ensure_key_pair(tmp_path / "data")
    from_dir = Settings(data_dir=tmp_path / "data")  # type: ignore[arg-type]
    kid = signer_from_settings(from_dir).key_id
    verifier = verifier_from_settings(from_dir)
    assert verifier is not None and list(verifier.keys) == [kid]
    other = ControlSigner.generate()
    explicit = Settings(
        data_dir=tmp_path / "empty",  # type: ignore[arg-type]
        control_signing_key=other.private_pem().decode(),  # type: ignore[arg-type]
        control_verify_keys=f"{public}, {other.public_pem().decode()}",  # type: ignore[arg-type]
    )
    assert signer_from_settings(explicit).key_id == other.key_id
    verifier = verifier_from_settings(explicit)
    assert verifier is not None and set(verifier.keys) == {kid, other.key_id}
    assert other.private_pem().decode() not in repr(explicit)
