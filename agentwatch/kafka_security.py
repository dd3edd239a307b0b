"""Kafka connection security from :class:`~agentwatch.config.Settings`, for every client.

One place turns the ``kafka_security_protocol``/``kafka_sasl_*``/``kafka_ssl_*`` settings into
what the clients take: keyword arguments for aiokafka's producer, consumer and admin client
(:func:`client_options`, also the SDK's ``kafka_options``) and faust's ``broker_credentials``
(:func:`faust_credentials`). The settings model has already checked the combinations and the
files; :func:`check_connection` then tries one connection so that a wrong password, an
untrusted certificate or a plaintext client on a TLS port fails at start with one line that
says what to fix. Secrets are never logged: options hold them, messages never do.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import ssl
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiokafka import errors as kafka_errors
from aiokafka.abc import AbstractTokenProvider
from aiokafka.conn import create_conn
from aiokafka.protocol.metadata import MetadataRequest
from pydantic import SecretStr

if TYPE_CHECKING:
    from agentwatch.config import Settings

__all__ = [
    "PLAINTEXT",
    "FileTokenProvider",
    "KafkaConnectError",
    "StaticTokenProvider",
    "check_connection",
    "client_options",
    "describe",
    "faust_credentials",
    "ssl_context",
]

log = logging.getLogger(__name__)

#: Settings overrides that turn every security option off (the embedded broker is plaintext).
PLAINTEXT: dict[str, Any] = {
    "kafka_security_protocol": "PLAINTEXT",
    "kafka_sasl_mechanism": None,
    "kafka_sasl_username": None,
    "kafka_sasl_password": None,
    "kafka_sasl_oauth_token": None,
    "kafka_sasl_oauth_token_file": None,
    "kafka_ssl_cafile": None,
    "kafka_ssl_key_password": None,
    "kafka_ssl_certfile": None,
    "kafka_ssl_keyfile": None,
}
TOKEN_EXPIRY_MARGIN_S = 30.0
"""A token file is read again this long before the token's ``exp`` claim."""


class KafkaConnectError(RuntimeError):
    """No Kafka connection could be made; the message is one line that says what to fix."""


# -- OAUTHBEARER token sources ------------------------------------------------------------


class StaticTokenProvider(AbstractTokenProvider):  # type: ignore[misc]
    """OAUTHBEARER with one fixed token (``kafka_sasl_oauth_token``)."""

    def __init__(self, token: SecretStr) -> None:
        self._token = token

    async def token(self) -> str:
        return self._token.get_secret_value()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(**********)"


class FileTokenProvider(AbstractTokenProvider):  # type: ignore[misc]
    """OAUTHBEARER with a token kept fresh in a file by something else (a sidecar, cron).

    aiokafka asks for a token on every new connection. The file is read again when it
    changed, or when the token's ``exp`` claim (for JWTs) is less than
    :data:`TOKEN_EXPIRY_MARGIN_S` away; otherwise the token read last is used.

    Parameters
    ----------
    path
        The token file (surrounding whitespace is ignored).
    clock
        Wall clock in seconds (tests inject one).
    """

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self._clock = clock
        self._token = ""
        self._stamp: tuple[int, int] | None = None
        self._expires: float | None = None

    async def token(self) -> str:
        stat = os.stat(self.path)
        stamp = (stat.st_mtime_ns, stat.st_size)
        expiring = self._expires is not None and self._clock() >= (
            self._expires - TOKEN_EXPIRY_MARGIN_S
        )
        if stamp != self._stamp or expiring or not self._token:
            text = self.path.read_text(encoding="utf-8").strip()
            if not text:
                raise KafkaConnectError(f"OAUTHBEARER token file {self.path} is empty")
            self._token, self._stamp, self._expires = text, stamp, jwt_expiry(text)
            if self._expires is not None and self._clock() >= self._expires:
                log.warning(
                    "agentwatch: the OAUTHBEARER token in %s expired %.0fs ago; whatever "
                    "refreshes that file has stopped",
                    self.path,
                    self._clock() - self._expires,
                )
        return self._token

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"


def jwt_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT (seconds since the epoch), or ``None`` for other tokens.

    >>> claims = base64.urlsafe_b64encode(b'{"exp": 1700000000}').decode().rstrip("=")
    >>> jwt_expiry(f"e30.{claims}.sig")
    1700000000.0
    >>> jwt_expiry("opaque-token") is None
    True
    """
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        exp = json.loads(payload).get("exp")
    except (ValueError, AttributeError):
        return None
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None


# -- options for the clients --------------------------------------------------------------


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The client TLS context (``None`` without TLS): CA, client certificate, hostname check."""
    if settings.kafka_security_protocol not in ("SSL", "SASL_SSL"):
        return None
    cafile = settings.kafka_ssl_cafile
    ctx = ssl.create_default_context(cafile=str(cafile) if cafile else None)
    ctx.check_hostname = settings.kafka_ssl_check_hostname
    if settings.kafka_ssl_certfile is not None:
        password = settings.kafka_ssl_key_password
        ctx.load_cert_chain(
            settings.kafka_ssl_certfile,
            settings.kafka_ssl_keyfile,
            password.get_secret_value() if password else None,
        )
    return ctx


def token_provider(settings: Settings) -> AbstractTokenProvider | None:
    """The OAUTHBEARER token source the settings name, if any."""
    if settings.kafka_sasl_oauth_token is not None:
        return StaticTokenProvider(settings.kafka_sasl_oauth_token)
    if settings.kafka_sasl_oauth_token_file is not None:
        return FileTokenProvider(settings.kafka_sasl_oauth_token_file)
    return None


def client_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for aiokafka clients (and the SDK's ``kafka_options``).

    >>> from agentwatch.config import Settings
    >>> client_options(Settings())
    {'security_protocol': 'PLAINTEXT'}
    >>> opts = client_options(Settings(kafka_security_protocol="SASL_PLAINTEXT",
    ...     kafka_sasl_mechanism="SCRAM-SHA-512", kafka_sasl_username="svc",
    ...     kafka_sasl_password="s3cret"))
    >>> sorted(opts)
    ['sasl_mechanism', 'sasl_plain_password', 'sasl_plain_username', 'security_protocol']
    """
    options: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    ctx = ssl_context(settings)
    if ctx is not None:
        options["ssl_context"] = ctx
    mechanism = settings.kafka_sasl_mechanism
    if mechanism is None:
        return options
    options["sasl_mechanism"] = mechanism
    if mechanism == "OAUTHBEARER":
        options["sasl_oauth_token_provider"] = token_provider(settings)
    else:
        password = settings.kafka_sasl_password
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = password.get_secret_value() if password else None
    return options


def faust_credentials(settings: Settings) -> Any:
    """faust's ``broker_credentials`` for the settings, or ``None`` for plaintext."""
    import faust

    ctx = ssl_context(settings)
    mechanism = settings.kafka_sasl_mechanism
    if mechanism == "OAUTHBEARER":
        return faust.OAuthCredentials(oauth_cb=token_provider(settings), ssl_context=ctx)
    if mechanism is not None:
        password = settings.kafka_sasl_password
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=password.get_secret_value() if password else None,
            ssl_context=ctx,
            mechanism=mechanism,
        )
    if ctx is not None:
        return faust.SSLCredentials(ctx)
    return None


def describe(options: Mapping[str, Any]) -> str:
    """How clients with ``options`` connect, without secrets: ``SASL_SSL, SCRAM-SHA-512 as 'svc'``.

    >>> describe({"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN",
    ...           "sasl_plain_username": "svc", "sasl_plain_password": "s3cret"})
    "SASL_SSL, PLAIN as 'svc'"
    """
    protocol = str(options.get("security_protocol", "PLAINTEXT"))
    mechanism = options.get("sasl_mechanism")
    if not protocol.startswith("SASL_") or not mechanism:
        return protocol
    user = options.get("sasl_plain_username")
    who = f" as {user!r}" if user and mechanism != "OAUTHBEARER" else ""
    return f"{protocol}, {mechanism}{who}"


# -- one connection at start ----------------------------------------------------------------

_CONNECTION_OPTIONS = (
    "client_id",
    "security_protocol",
    "ssl_context",
    "sasl_mechanism",
    "sasl_plain_username",
    "sasl_plain_password",
    "sasl_kerberos_service_name",
    "sasl_kerberos_domain_name",
    "sasl_oauth_token_provider",
)


async def check_connection(
    bootstrap: str, options: Mapping[str, Any], timeout_s: float = 15.0
) -> None:
    """Connect to one broker of ``bootstrap`` with ``options`` and read the cluster metadata.

    A refused login or certificate fails at once; an unreachable broker is tried again until
    ``timeout_s``.

    Raises
    ------
    KafkaConnectError
        with one line: where, how, what went wrong and what to check.
    """
    kwargs = {k: v for k, v in options.items() if k in _CONNECTION_OPTIONS and v is not None}
    hosts = [h.strip() for h in bootstrap.split(",") if h.strip()]
    deadline = time.monotonic() + timeout_s
    last = "no broker answered"
    while True:
        for host in hosts:
            name, _, port = host.rpartition(":")
            remaining = max(0.5, deadline - time.monotonic())
            conn = None
            try:
                conn = await asyncio.wait_for(
                    create_conn(
                        name, int(port), request_timeout_ms=int(remaining * 1000), **kwargs
                    ),
                    remaining,
                )
                await asyncio.wait_for(conn.send(MetadataRequest([])), remaining)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                fatal, reason = explain(exc, kwargs)
                last = f"{host}: {reason}" if len(hosts) > 1 else reason
                if fatal:
                    raise KafkaConnectError(_message(bootstrap, kwargs, last)) from None
            finally:
                if conn is not None:
                    conn.close()
        if time.monotonic() >= deadline:
            raise KafkaConnectError(_message(bootstrap, kwargs, last))
        await asyncio.sleep(0.5)


def _message(bootstrap: str, options: Mapping[str, Any], reason: str) -> str:
    return f"cannot connect to Kafka at {bootstrap} ({describe(options)}): {reason}"


def explain(exc: BaseException, options: Mapping[str, Any]) -> tuple[bool, str]:
    """``(fatal, reason)`` for a failed connection; fatal = retrying cannot help."""
    protocol = str(options.get("security_protocol", "PLAINTEXT"))
    mechanism = options.get("sasl_mechanism")
    if isinstance(
        exc, kafka_errors.SaslAuthenticationFailed | kafka_errors.AuthenticationFailedError
    ):
        if mechanism == "OAUTHBEARER":
            hint = "check AGENTWATCH_KAFKA_SASL_OAUTH_TOKEN (or _TOKEN_FILE)"
        else:
            hint = "check AGENTWATCH_KAFKA_SASL_USERNAME and AGENTWATCH_KAFKA_SASL_PASSWORD"
        return True, f"authentication failed (wrong user, password or token): {hint}"
    if isinstance(
        exc, kafka_errors.UnsupportedSaslMechanismError | kafka_errors.IllegalSaslStateError
    ):
        return True, (
            f"the broker does not offer SASL mechanism {mechanism}: "
            "check AGENTWATCH_KAFKA_SASL_MECHANISM"
        )
    if isinstance(exc, ssl.SSLCertVerificationError):
        return True, (
            f"the broker's TLS certificate was not accepted ({exc.verify_message}): "
            "check AGENTWATCH_KAFKA_SSL_CAFILE and AGENTWATCH_KAFKA_SSL_CHECK_HOSTNAME"
        )
    if isinstance(exc, ssl.SSLError):
        return True, (
            f"TLS handshake failed ({exc.reason or exc}): is this a TLS listener, and does it "
            "want a client certificate (AGENTWATCH_KAFKA_SSL_CERTFILE)?"
        )
    if isinstance(exc, KafkaConnectError):  # from a token provider
        return True, str(exc)
    if isinstance(exc, ConnectionRefusedError):
        return False, "connection refused (is the broker running, is the port right?)"
    if isinstance(exc, TimeoutError | asyncio.TimeoutError | kafka_errors.KafkaTimeoutError):
        hint = "" if protocol in ("SSL", "SASL_SSL") else " (a TLS listener? then use SSL)"
        return False, f"no answer in time{hint}"
    if isinstance(exc, kafka_errors.KafkaConnectionError):  # accepted, then dropped
        certificate = ""
        if protocol in ("SSL", "SASL_SSL"):
            certificate = ", or a client certificate (AGENTWATCH_KAFKA_SSL_CERTFILE)"
        return True, (
            "the broker closed the connection: does this listener want another security "
            f"protocol than {protocol} (AGENTWATCH_KAFKA_SECURITY_PROTOCOL){certificate}?"
        )
    if isinstance(exc, OSError):
        return False, f"{exc.strerror or exc}"
    return False, f"{type(exc).__name__}: {exc}"
