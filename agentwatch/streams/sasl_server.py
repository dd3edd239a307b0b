"""Server side of the SASL mechanisms Kafka clients use: PLAIN, SCRAM-SHA-256/512, OAUTHBEARER.

Pure logic (no I/O): each exchange takes the client's tokens and answers with the server's,
or raises :class:`SaslFailed`. The embedded broker's secure listener
(:mod:`agentwatch.streams.secure_listener`) drives them, because Tansu 0.6.0 cannot
authenticate clients itself (see docs/operations.md, "Securing Kafka").

Users are kept as SCRAM credentials (salt, iteration count, stored key, server key), never as
passwords, like Kafka keeps them; PLAIN is checked against the same credentials.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

__all__ = [
    "MECHANISMS",
    "OAuthBearerExchange",
    "PlainExchange",
    "SaslExchange",
    "SaslFailed",
    "ScramCredential",
    "ScramExchange",
    "UserStore",
]

#: Mechanisms the secure listener offers, in the order Kafka lists them.
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER")
#: Kafka's lower bound for SCRAM iterations.
SCRAM_ITERATIONS = 4096
_HASHES: dict[str, Callable[..., hashlib._Hash]] = {
    "SCRAM-SHA-256": hashlib.sha256,
    "SCRAM-SHA-512": hashlib.sha512,
}


class SaslFailed(Exception):
    """Authentication failed; the message is what the client is told (no secrets in it)."""


@dataclass(frozen=True)
class ScramCredential:
    """What a server keeps of a password for one SCRAM mechanism (RFC 5802, section 3)."""

    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes

    @classmethod
    def derive(
        cls,
        mechanism: str,
        password: str,
        *,
        salt: bytes | None = None,
        iterations: int = SCRAM_ITERATIONS,
    ) -> ScramCredential:
        """The credential of ``password`` for ``mechanism`` (``SCRAM-SHA-256``/``-512``).

        >>> c = ScramCredential.derive("SCRAM-SHA-256", "pencil", salt=b"salt", iterations=1)
        >>> len(c.stored_key), c.iterations
        (32, 1)
        """
        digest = _HASHES[mechanism]
        salt = salt if salt is not None else secrets.token_bytes(16)
        name = digest().name
        salted = hashlib.pbkdf2_hmac(name, password.encode("utf-8"), salt, iterations)
        client_key = hmac.digest(salted, b"Client Key", name)
        return cls(
            salt=salt,
            iterations=iterations,
            stored_key=digest(client_key).digest(),
            server_key=hmac.digest(salted, b"Server Key", name),
        )


class UserStore:
    """SASL users: SCRAM credentials per mechanism, and accepted OAUTHBEARER tokens.

    Parameters
    ----------
    users
        User name -> password. Only derived credentials are kept.
    oauth_tokens
        Bearer tokens the OAUTHBEARER mechanism accepts.
    """

    def __init__(self, users: Mapping[str, str], oauth_tokens: Iterable[str] = ()) -> None:
        self._credentials = {
            (mechanism, name): ScramCredential.derive(mechanism, password)
            for name, password in users.items()
            for mechanism in _HASHES
        }
        self._tokens = tuple(oauth_tokens)

    def credential(self, mechanism: str, user: str) -> ScramCredential | None:
        """The user's credential for a SCRAM mechanism, or ``None`` for an unknown user."""
        return self._credentials.get((mechanism, user))

    def check_password(self, user: str, password: str) -> bool:
        """Whether ``password`` is ``user``'s (checked against the SCRAM-SHA-256 credential)."""
        cred = self.credential("SCRAM-SHA-256", user)
        if cred is None:
            return False
        candidate = ScramCredential.derive(
            "SCRAM-SHA-256", password, salt=cred.salt, iterations=cred.iterations
        )
        return hmac.compare_digest(candidate.stored_key, cred.stored_key)

    def check_token(self, token: str) -> bool:
        """Whether ``token`` is an accepted bearer token."""
        found = False
        for known in self._tokens:  # compare with every token: no early exit
            found |= hmac.compare_digest(known.encode(), token.encode())
        return found


class SaslExchange:
    """One authentication exchange. :meth:`step` answers each client token."""

    mechanism: str = ""
    #: The authenticated user (``None`` until the exchange succeeded).
    principal: str | None = None
    done: bool = False

    def step(self, token: bytes) -> bytes:
        """Answer one client token; raise :class:`SaslFailed` to refuse."""
        raise NotImplementedError

    def _fail(self) -> SaslFailed:
        return SaslFailed(
            "Authentication failed during authentication due to invalid credentials with "
            f"SASL mechanism {self.mechanism}"
        )

    @staticmethod
    def start(mechanism: str, users: UserStore) -> SaslExchange:
        """A new exchange for ``mechanism`` (one of :data:`MECHANISMS`)."""
        if mechanism == "PLAIN":
            return PlainExchange(users)
        if mechanism in _HASHES:
            return ScramExchange(mechanism, users)
        if mechanism == "OAUTHBEARER":
            return OAuthBearerExchange(users)
        raise ValueError(f"unsupported SASL mechanism {mechanism!r}")


class PlainExchange(SaslExchange):
    """RFC 4616: one message ``authzid NUL authcid NUL password``."""

    mechanism = "PLAIN"

    def __init__(self, users: UserStore) -> None:
        self.users = users

    def step(self, token: bytes) -> bytes:
        parts = token.split(b"\0")
        if len(parts) != 3:
            raise self._fail()
        authzid, user, password = (p.decode("utf-8", "replace") for p in parts)
        if authzid and authzid != user:
            raise self._fail()
        if not self.users.check_password(user, password):
            raise self._fail()
        self.principal, self.done = user, True
        return b""


class ScramExchange(SaslExchange):
    """RFC 5802/7677 server: client-first -> server-first, client-final -> server-final.

    ``nonce`` (the server's part) is random unless given (tests use RFC 7677's).
    """

    def __init__(self, mechanism: str, users: UserStore, nonce: str | None = None) -> None:
        self.mechanism = mechanism
        self.users = users
        self._digest = _HASHES[mechanism]
        self._server_nonce = nonce or secrets.token_urlsafe(18)
        self._state = 0
        self._first_bare = ""
        self._server_first = ""
        self._nonce = ""
        self._user = ""
        self._cred: ScramCredential | None = None

    def step(self, token: bytes) -> bytes:
        try:
            text = token.decode("utf-8")
        except UnicodeDecodeError:
            raise self._fail() from None
        if self._state == 0:
            return self._first(text)
        if self._state == 1:
            return self._final(text)
        raise self._fail()

    def _first(self, text: str) -> bytes:
        gs2, sep, bare = text.partition(",")
        authzid, sep2, bare = bare.partition(",")
        if not sep or not sep2 or gs2 not in ("n", "y") or authzid:
            raise self._fail()  # channel binding or an authorization id: not supported
        attrs = _attributes(bare)
        user = attrs.get("n", "").replace("=2C", ",").replace("=3D", "=")
        client_nonce = attrs.get("r", "")
        cred = self.users.credential(self.mechanism, user)
        if not user or not client_nonce or cred is None:
            raise self._fail()
        self._user, self._cred, self._first_bare = user, cred, bare
        self._nonce = client_nonce + self._server_nonce
        salt = base64.b64encode(cred.salt).decode()
        self._server_first = f"r={self._nonce},s={salt},i={cred.iterations}"
        self._state = 1
        return self._server_first.encode()

    def _final(self, text: str) -> bytes:
        assert self._cred is not None
        without_proof, sep, proof_attr = text.rpartition(",p=")
        attrs = _attributes(without_proof)
        if not sep or attrs.get("c") != "biws" or attrs.get("r") != self._nonce:
            raise self._fail()
        try:
            proof = base64.b64decode(proof_attr, validate=True)
        except ValueError:
            raise self._fail() from None
        auth_message = f"{self._first_bare},{self._server_first},{without_proof}".encode()
        name = self._digest().name
        signature = hmac.digest(self._cred.stored_key, auth_message, name)
        if len(proof) != len(signature):
            raise self._fail()
        client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        if not hmac.compare_digest(self._digest(client_key).digest(), self._cred.stored_key):
            raise self._fail()
        self._state, self.principal, self.done = 2, self._user, True
        verifier = hmac.digest(self._cred.server_key, auth_message, name)
        return b"v=" + base64.b64encode(verifier)


class OAuthBearerExchange(SaslExchange):
    """RFC 7628 initial response ``n,,^Aauth=Bearer <token>^A...^A^A`` against known tokens.

    An unknown token fails at once with an error (Kafka would first send an error challenge;
    aiokafka does not read it, so the client would only see the connection drop).
    """

    mechanism = "OAUTHBEARER"

    def __init__(self, users: UserStore) -> None:
        self.users = users

    def step(self, token: bytes) -> bytes:
        text = token.decode("utf-8", "replace")
        gs2, sep, rest = text.partition("\x01")
        if not sep or not gs2.startswith(("n,", "y,")):
            raise self._fail()
        fields = dict(kv.split("=", 1) for kv in rest.split("\x01") if "=" in kv)
        scheme, _, bearer = fields.get("auth", "").partition(" ")
        if scheme.lower() != "bearer" or not bearer or not self.users.check_token(bearer):
            raise self._fail()
        self.principal, self.done = "oauth", True
        return b""


def _attributes(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if sep and len(key) == 1:
            out.setdefault(key, value)
    return out
