"""Ed25519 signatures of :class:`~agentwatch.schemas.ControlState` records.

Workers sign every control state they publish; the SDK obeys a record only when one of the
public keys it was given verifies it. Importable without faust or river (the SDK needs it).

Canonical encoding (what is signed)
-----------------------------------
The message is the 22-byte context ``b"agentwatch.control.v1\\n"`` followed by the record's JSON
with **every field except** ``signature`` (so ``key_id`` is covered), as UTF-8, object keys
sorted, no whitespace, timestamps in their wire form (RFC 3339 UTC with ``Z``), strings with
JSON's minimal escaping (as RFC 8785 does for these field types). ``signature`` is the 64-byte
Ed25519 signature in unpadded base64url; ``key_id`` is the first 16 hex digits of the SHA-256
of the signer's raw 32-byte public key, so a verifier holding several keys (rotation) picks
the right one, and an operator can tell keys apart.

Key files
---------
``control.key``: the private key, PKCS#8 PEM, mode 0600 (loading refuses a file group or others
can read). ``control.pub``: the public key, SubjectPublicKeyInfo PEM. ``openssl genpkey
-algorithm ed25519`` makes compatible files; so does :func:`ensure_key_pair` (``agentwatch keys
generate DIR``). A public key may also be given inline as PEM text or as the base64 of its raw
32 bytes.

Examples
--------
>>> from datetime import datetime, timezone
>>> from agentwatch.schemas import ControlState
>>> signer = ControlSigner.generate()
>>> state = ControlState(agent_id="a1", halted=True, version=7,
...     updated_at=datetime(2026, 1, 1, tzinfo=timezone.utc), updated_by="ops")
>>> signed = signer.sign(state)
>>> signed.key_id == signer.key_id, len(signed.signature or "")
(True, 86)
>>> verifier = ControlVerifier([signer.public_key])
>>> verifier.verify(signed)  # no exception: authentic
>>> verifier.verify(signed.model_copy(update={"halted": False}))
Traceback (most recent call last):
...
agentwatch.schemas.signing.VerificationError: bad_signature: signature does not match the record
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from agentwatch.schemas.control import ControlState

if TYPE_CHECKING:
    from agentwatch.config import Settings

__all__ = [
    "PRIVATE_KEY_FILE",
    "PUBLIC_KEY_FILE",
    "SIGNING_CONTEXT",
    "ControlSigner",
    "ControlVerifier",
    "Rejection",
    "SigningKeyError",
    "VerificationError",
    "canonical_bytes",
    "ensure_key_pair",
    "key_id_of",
    "load_public_key",
    "signer_from_settings",
    "verifier_from_settings",
]

SIGNING_CONTEXT = b"agentwatch.control.v1\n"
PRIVATE_KEY_FILE = "control.key"
PUBLIC_KEY_FILE = "control.pub"
_RAW_KEY_BYTES = 32

Rejection = Literal["unsigned", "unknown_key", "bad_signature"]

MAKE_ONE = (
    "make one with `agentwatch keys generate DIR` and set "
    "AGENTWATCH_CONTROL_SIGNING_KEY_FILE=DIR/control.key"
)


class SigningKeyError(ValueError):
    """A key is missing or cannot be used; the message says which and what to do."""


class VerificationError(ValueError):
    """A control record is not authentic: ``reason`` is one of :data:`Rejection`."""

    def __init__(self, reason: Rejection, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: Rejection = reason
        self.detail = detail


def canonical_bytes(state: ControlState) -> bytes:
    """The bytes an Ed25519 signature of ``state`` covers (see the module docstring).

    Examples
    --------
    >>> from datetime import datetime, timezone
    >>> s = ControlState(agent_id="a1", updated_at=datetime(2026, 1, 1, tzinfo=timezone.utc),
    ...                  updated_by="ops", version=3, signature="A" * 86)
    >>> print(canonical_bytes(s).decode().replace(",", ",\\n"))  # one line, split here
    agentwatch.control.v1
    {"agent_id":"a1",
    "halted":false,
    "incident_id":null,
    "key_id":null,
    "reason":"",
    "revoked":[],
    "updated_at":"2026-01-01T00:00:00Z",
    "updated_by":"ops",
    "version":3}
    """
    doc = state.model_dump(mode="json", exclude={"signature"})
    return SIGNING_CONTEXT + orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


def _raw(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id_of(public_key: Ed25519PublicKey) -> str:
    """First 16 hex digits of the SHA-256 of the raw public key."""
    return hashlib.sha256(_raw(public_key)).hexdigest()[:16]


def _b64decode(text: str) -> bytes:
    cleaned = "".join(text.split())
    padded = cleaned + "=" * (-len(cleaned) % 4)
    return base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)


class ControlSigner:
    """Signs control states with one Ed25519 private key (a worker holds one).

    Parameters
    ----------
    private_key
        The key; :meth:`from_file`, :meth:`from_text` and :meth:`generate` make one.
    """

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.public_key = private_key.public_key()
        self.key_id = key_id_of(self.public_key)

    def __repr__(self) -> str:
        return f"ControlSigner(key_id={self.key_id!r})"

    @classmethod
    def generate(cls) -> ControlSigner:
        """A signer with a fresh random key (tests; keys for real use come from files)."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_text(cls, text: str, source: str = "AGENTWATCH_CONTROL_SIGNING_KEY") -> ControlSigner:
        """From PKCS#8 PEM text, or the base64 of the raw 32-byte private key."""
        try:
            if "-----BEGIN" in text:
                key = serialization.load_pem_private_key(text.encode(), password=None)
            else:
                raw = _b64decode(text)
                if len(raw) != _RAW_KEY_BYTES:
                    raise ValueError(f"{len(raw)} bytes, not {_RAW_KEY_BYTES}")
                key = Ed25519PrivateKey.from_private_bytes(raw)
        except (ValueError, TypeError, binascii.Error) as exc:
            raise SigningKeyError(
                f"{source}: not an Ed25519 private key ({type(exc).__name__}); {MAKE_ONE}"
            ) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise SigningKeyError(f"{source}: a {type(key).__name__}, not Ed25519; {MAKE_ONE}")
        return cls(key)

    @classmethod
    def from_file(cls, path: str | Path) -> ControlSigner:
        """From a PEM file that only its owner may read (mode 0600 or stricter)."""
        path = Path(path)
        try:
            info = path.stat()
            text = path.read_text(encoding="ascii")
        except FileNotFoundError:
            raise SigningKeyError(f"control signing key {path} not found; {MAKE_ONE}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SigningKeyError(f"control signing key {path}: cannot read it: {exc}") from None
        if os.name == "posix" and info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise SigningKeyError(
                f"control signing key {path} is readable by others "
                f"(mode {stat.S_IMODE(info.st_mode):04o}); run: chmod 600 {path}"
            )
        return cls.from_text(text, source=str(path))

    def sign(self, state: ControlState) -> ControlState:
        """``state`` with this signer's ``key_id`` and a fresh ``signature``."""
        unsigned = state.model_copy(update={"key_id": self.key_id, "signature": None})
        signature = self._key.sign(canonical_bytes(unsigned))
        encoded = base64.urlsafe_b64encode(signature).rstrip(b"=").decode()
        return unsigned.model_copy(update={"signature": encoded})

    def sign_bytes(self, message: bytes) -> str:
        """The Ed25519 signature of ``message`` (unpadded base64url).

        For records other than control states (approval policies and decisions): the caller
        puts its own context prefix in ``message`` so a signature never verifies as another
        kind of record.
        """
        signature = self._key.sign(message)
        return base64.urlsafe_b64encode(signature).rstrip(b"=").decode()

    def private_pem(self) -> bytes:
        """The private key as PKCS#8 PEM (for writing a key file)."""
        return self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def public_pem(self) -> bytes:
        """The public key as SubjectPublicKeyInfo PEM (what agents are given)."""
        return self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def load_public_key(spec: str) -> Ed25519PublicKey:
    """A public key from PEM text, the base64 of its raw 32 bytes, or a file holding either.

    Raises
    ------
    SigningKeyError
        naming the file (or the value's first characters) and the reason.
    """
    text = spec.strip()
    source = "public key " + (text[:16] + "..." if len(text) > 16 else text)
    if "-----BEGIN" not in text and Path(text).is_file():
        path = Path(text)
        try:
            text = path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise SigningKeyError(f"control public key {path}: cannot read it: {exc}") from None
        source = f"control public key {path}"
    try:
        if "-----BEGIN" in text:
            key = serialization.load_pem_public_key(text.encode())
        else:
            raw = _b64decode(text)
            if len(raw) != _RAW_KEY_BYTES:
                raise ValueError(f"{len(raw)} bytes, not {_RAW_KEY_BYTES}")
            key = Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise SigningKeyError(
            f"{source}: neither a key file nor an Ed25519 public key (PEM, or base64 of "
            f"32 bytes): {exc}"
        ) from None
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError(f"{source}: a {type(key).__name__}, not Ed25519")
    return key


class ControlVerifier:
    """Checks control records against the public keys an agent accepts (several: rotation).

    Parameters
    ----------
    keys
        The accepted public keys; each record names the one that signed it by ``key_id``.
    """

    def __init__(self, keys: Iterable[Ed25519PublicKey]) -> None:
        self.keys = {key_id_of(k): k for k in keys}

    def __repr__(self) -> str:
        return f"ControlVerifier(key_ids={sorted(self.keys)!r})"

    @classmethod
    def load(cls, specs: Sequence[str]) -> ControlVerifier:
        """From key specs (see :func:`load_public_key`)."""
        return cls(load_public_key(spec) for spec in specs)

    def verify(self, state: ControlState) -> None:
        """Return if one of the keys signed exactly this record, else raise.

        Raises
        ------
        VerificationError
            ``unsigned``, ``unknown_key`` (signed with a key not accepted here) or
            ``bad_signature`` (tampered, or not a signature at all).
        """
        if not state.signature or not state.key_id:
            raise VerificationError("unsigned", "record carries no signature")
        key = self.keys.get(state.key_id)
        if key is None:
            raise VerificationError(
                "unknown_key",
                f"signed with key {state.key_id!r}; this agent accepts {sorted(self.keys)}",
            )
        try:
            signature = _b64decode(state.signature)
            key.verify(signature, canonical_bytes(state))
        except (InvalidSignature, ValueError, binascii.Error):
            raise VerificationError(
                "bad_signature", "signature does not match the record"
            ) from None

    def verify_bytes(self, message: bytes, key_id: str | None, signature: str | None) -> None:
        """Return if the key ``key_id`` signed ``message`` (see :meth:`ControlSigner.sign_bytes`).

        Raises
        ------
        VerificationError
            ``unsigned``, ``unknown_key`` or ``bad_signature``.
        """
        if not signature or not key_id:
            raise VerificationError("unsigned", "record carries no signature")
        key = self.keys.get(key_id)
        if key is None:
            raise VerificationError(
                "unknown_key", f"signed with key {key_id!r}; accepted: {sorted(self.keys)}"
            )
        try:
            key.verify(_b64decode(signature), message)
        except (InvalidSignature, ValueError, binascii.Error):
            raise VerificationError(
                "bad_signature", "signature does not match the record"
            ) from None


def _write_new(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def ensure_key_pair(directory: str | Path) -> tuple[Path, Path, bool]:
    """``DIR/control.key`` (0600) and ``DIR/control.pub``: made once, then kept.

    Returns the two paths and whether a new key was made. A missing ``control.pub`` is written
    again from an existing private key.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    private, public = directory / PRIVATE_KEY_FILE, directory / PUBLIC_KEY_FILE
    created = False
    if private.exists():
        signer = ControlSigner.from_file(private)
    else:
        signer = ControlSigner.generate()
        _write_new(private, signer.private_pem(), 0o600)
        created = True
    expected = signer.public_pem()
    if created or not public.exists():
        public.unlink(missing_ok=True)
        _write_new(public, expected, 0o644)
    elif key_id_of(load_public_key(str(public))) != signer.key_id:
        raise SigningKeyError(
            f"{public} does not belong to {private}; delete {public} to write it again"
        )
    return private, public, created


def signer_from_settings(settings: Settings) -> ControlSigner:
    """The worker's signer: ``control_signing_key``, else ``control_signing_key_file``, else
    ``<data_dir>/control.key`` when it exists.

    Raises
    ------
    SigningKeyError
        with one line saying how to make a key when there is none.
    """
    if settings.control_signing_key is not None:
        return ControlSigner.from_text(settings.control_signing_key.get_secret_value())
    if settings.control_signing_key_file is not None:
        return ControlSigner.from_file(settings.control_signing_key_file)
    fallback = Path(settings.data_dir) / PRIVATE_KEY_FILE
    if fallback.is_file():
        return ControlSigner.from_file(fallback)
    raise SigningKeyError(f"no control signing key (workers sign every halt); {MAKE_ONE}")


def verifier_from_settings(settings: Settings) -> ControlVerifier | None:
    """The SDK's verifier: ``control_verify_keys``, else ``<data_dir>/control.pub`` when it
    exists, else ``None`` (records are not verified; see docs/operations.md)."""
    if settings.control_verify_keys:
        return ControlVerifier.load(settings.control_verify_keys)
    fallback = Path(settings.data_dir) / PUBLIC_KEY_FILE
    if fallback.is_file():
        return ControlVerifier.load([str(fallback)])
    return None
