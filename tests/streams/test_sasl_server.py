"""The embedded broker's SASL mechanisms, against RFC test vectors and aiokafka's own clients."""

from __future__ import annotations

import base64

import pytest
from aiokafka.conn import SaslPlainAuthenticator, ScramAuthenticator

from agentwatch.streams.sasl_server import (
    OAuthBearerExchange,
    PlainExchange,
    SaslExchange,
    SaslFailed,
    ScramCredential,
    ScramExchange,
    UserStore,
)

USERS = UserStore({"alice": "wonder land", "bob,=x": "b0b"}, oauth_tokens=["tok-1", "tok-2"])


class Rfc7677Store(UserStore):
    """User ``user``, password ``pencil``, with the salt of RFC 7677's example."""

    def __init__(self) -> None:
        super().__init__({})

    def credential(self, mechanism: str, user: str) -> ScramCredential | None:
        salt = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
        if user != "user":
            return None
        return ScramCredential.derive(mechanism, "pencil", salt=salt, iterations=4096)


def test_scram_sha_256_matches_rfc_7677_example() -> None:
    exchange = ScramExchange(
        "SCRAM-SHA-256", Rfc7677Store(), nonce="%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
    )
    server_first = exchange.step(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
    assert server_first == (
        b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    )
    server_final = exchange.step(
        b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
        b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    )
    assert server_final == b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    assert exchange.done and exchange.principal == "user"


def scram_client(mechanism: str, user: str, password: str) -> ScramAuthenticator:
    return ScramAuthenticator(
        loop=None,
        sasl_plain_username=user,
        sasl_plain_password=password,
        sasl_mechanism=mechanism,
    )


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
@pytest.mark.parametrize("user", ["alice", "bob,=x"])  # ',' and '=' travel escaped
def test_scram_accepts_aiokafkas_client_and_proves_itself(mechanism: str, user: str) -> None:
    password = "wonder land" if user == "alice" else "b0b"
    client = scram_client(mechanism, user, password)
    server = SaslExchange.start(mechanism, USERS)
    client_first, _ = client._step(None)
    client_final, _ = client._step(server.step(client_first))
    server_final = server.step(client_final)
    assert client._step(server_final) is None  # the client checked the server's signature
    assert server.done and server.principal == user


@pytest.mark.parametrize(
    ("user", "password"), [("alice", "wonderland"), ("alice", ""), ("mallory", "wonder land")]
)
def test_scram_refuses_a_wrong_password_or_unknown_user(user: str, password: str) -> None:
    client = scram_client("SCRAM-SHA-512", user, password)
    server = SaslExchange.start("SCRAM-SHA-512", USERS)
    with pytest.raises(SaslFailed, match="invalid credentials with SASL mechanism SCRAM-SHA-512"):
        first, _ = client._step(None)
        final, _ = client._step(server.step(first))
        server.step(final)
    assert not server.done and server.principal is None


def test_scram_refuses_replayed_or_tampered_messages() -> None:
    client = scram_client("SCRAM-SHA-256", "alice", "wonder land")
    server = SaslExchange.start("SCRAM-SHA-256", USERS)
    first, _ = client._step(None)
    final, _ = client._step(server.step(first))
    tampered = final.replace(b"c=biws", b"c=eSws")  # claims channel binding
    with pytest.raises(SaslFailed):
        server.step(tampered)
    other = SaslExchange.start("SCRAM-SHA-256", USERS)
    other.step(first)
    with pytest.raises(SaslFailed):  # another session's final message: nonce differs
        other.step(final)
    with pytest.raises(SaslFailed):  # channel binding is not offered
        SaslExchange.start("SCRAM-SHA-256", USERS).step(b"p=tls-unique,,n=alice,r=abc")


def test_plain_checks_the_password_against_the_scram_credential() -> None:
    token = SaslPlainAuthenticator(
        loop=None, sasl_plain_username="alice", sasl_plain_password="wonder land"
    )._step(None)[0]
    exchange = PlainExchange(USERS)
    assert exchange.step(token) == b"" and exchange.principal == "alice"
    for bad in (b"\0alice\0wrong", b"\0nobody\0wonder land", b"eve\0alice\0wonder land", b"x"):
        with pytest.raises(SaslFailed, match="PLAIN"):
            PlainExchange(USERS).step(bad)


def test_oauthbearer_accepts_known_tokens_only() -> None:
    ok = OAuthBearerExchange(USERS)
    assert ok.step(b"n,,\x01auth=Bearer tok-2\x01\x01") == b"" and ok.done
    with_extension = OAuthBearerExchange(USERS)
    assert with_extension.step(b"n,,\x01auth=Bearer tok-1\x01ext=1\x01\x01") == b""
    for bad in (b"n,,\x01auth=Bearer tok-3\x01\x01", b"n,,\x01auth=Basic tok-1\x01\x01", b"tok-1"):
        with pytest.raises(SaslFailed, match="OAUTHBEARER"):
            OAuthBearerExchange(USERS).step(bad)


def test_only_the_four_mechanisms_exist_and_passwords_are_not_kept() -> None:
    with pytest.raises(ValueError, match="GSSAPI"):
        SaslExchange.start("GSSAPI", USERS)
    assert "wonder land" not in repr(vars(USERS))
    cred = USERS.credential("SCRAM-SHA-512", "alice")
    assert cred is not None and cred.iterations == 4096 and len(cred.stored_key) == 64
