"""Real Prometheus, promtool and Alertmanager (Debian's packages) for tests, on loopback.

``make test`` installs the packages when they are missing (``make system-deps``) and sets
``REQUIRE_SYSTEM_BINARIES=1``: a missing binary then FAILS the test. Run outside ``make test``
(a developer's ``pytest``), a missing binary skips the test with a loud warning and a line in
the session summary (``tests/conftest.py``), never silently.

:class:`Alertmanager` and :class:`Prometheus` are async context managers that start the binary
on a free loopback port with a config written to a temporary directory, wait until it is
ready, and stop it (SIGTERM, then SIGKILL) on exit. Their log is kept in the directory and
quoted when startup fails. :class:`WebhookReceiver` is a loopback HTTP server recording what
Alertmanager (or the webhook notifier) posts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import time
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from agentwatch.streams.broker import free_port

__all__ = [
    "MISSING_BINARIES",
    "REQUIRE_ENV",
    "Alertmanager",
    "Prometheus",
    "Received",
    "WebhookReceiver",
    "eventually",
    "require_binary",
]

REQUIRE_ENV = "REQUIRE_SYSTEM_BINARIES"
PACKAGES = {
    "prometheus": "prometheus",
    "promtool": "prometheus",
    "prometheus-alertmanager": "prometheus-alertmanager",
    "chromium": "chromium",
    "chromedriver": "chromium-driver",
}
#: Binaries found missing by tests that were skipped (reported by tests/conftest.py).
MISSING_BINARIES: set[str] = set()
STARTUP_TIMEOUT_S = 30.0


def require_binary(name: str) -> str:
    """The path of ``name``; a failure under ``make test``, else a loud skip."""
    path = shutil.which(name)
    if path is not None:
        return path
    package = PACKAGES.get(name, name)
    how = f"`make system-deps` (as root: apt-get install -y {package})"
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{name} not found on PATH; {REQUIRE_ENV}=1 requires it: install it with {how}")
    MISSING_BINARIES.add(name)
    message = (
        f"SKIPPED: {name} is not installed, so this test against the real binary did not run; "
        f"install it with {how} (`make test` does, and fails without it)"
    )
    warnings.warn(message, stacklevel=2)
    pytest.skip(message)


# -- a loopback receiver -------------------------------------------------------------------


@dataclass
class Received:
    """One request a :class:`WebhookReceiver` got."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class WebhookReceiver:
    """An HTTP server on 127.0.0.1 recording every POST; ``status`` scripts the answers.

    ``check`` may refuse a request (return an HTTP status) before it is recorded.
    """

    check: Callable[[web.Request, bytes], int | None] | None = None
    received: list[Received] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)
    """Statuses to answer the next requests with (then 200)."""
    _runner: web.AppRunner | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def on(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.answers:
            return web.Response(status=self.answers.pop(0), text="scripted failure")
        if self.check is not None:
            refused = self.check(request, body)
            if refused is not None:
                return web.Response(status=refused, text="refused")
        self.received.append(Received(request.path, dict(request.headers), body, time.time()))
        return web.Response(status=200, text="ok")

    async def __aenter__(self) -> WebhookReceiver:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


# -- the binaries --------------------------------------------------------------------------


class _Process:
    """A server binary run for one test: config in ``directory``, log in ``<name>.log``."""

    binary = ""
    ready_path = "/-/ready"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = 0
        self._process: asyncio.subprocess.Process | None = None
        self.log_file = directory / f"{self.binary}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def args(self) -> list[str]:
        raise NotImplementedError

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    async def __aenter__(self) -> _Process:
        path = require_binary(self.binary)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port("127.0.0.1")
        with self.log_file.open("ab") as log:
            self._process = await asyncio.create_subprocess_exec(
                path, *self.args(), stdout=log, stderr=log, stdin=asyncio.subprocess.DEVNULL
            )
        try:
            await self._wait_ready()
        except BaseException:
            await self.stop()
            raise
        return self

    async def _wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        async with aiohttp.ClientSession() as http:
            while True:
                assert self._process is not None
                if self._process.returncode is not None:
                    raise RuntimeError(
                        f"{self.binary} exited ({self._process.returncode}):\n{self.log_tail()}"
                    )
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with http.get(f"{self.url}{self.ready_path}") as resp:
                        if resp.status == 200:
                            return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.binary} not ready in time:\n{self.log_tail()}")
                await asyncio.sleep(0.05)

    async def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 10.0)
        except TimeoutError:
            process.kill()
            await process.wait()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class Alertmanager(_Process):
    """Debian's ``prometheus-alertmanager`` with ``config`` (a dict), clustering off."""

    binary = "prometheus-alertmanager"

    def __init__(self, directory: Path, config: dict[str, Any]) -> None:
        super().__init__(directory)
        self.config = config

    def args(self) -> list[str]:
        config_file = self.directory / "alertmanager.yml"
        config_file.write_text(yaml.safe_dump(self.config))
        return [
            f"--config.file={config_file}",
            f"--storage.path={self.directory / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",  # no gossip port: a single, private instance
            "--log.level=info",
        ]

    async def alerts(self, **filters: str) -> list[dict[str, Any]]:
        """``GET /api/v2/alerts`` (active ones), optionally filtered by label equality."""
        params = [("filter", f'{k}="{v}"') for k, v in filters.items()]
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{self.url}/api/v2/alerts", params=params) as resp,
        ):
            assert resp.status == 200, await resp.text()
            return list(await resp.json())


class Prometheus(_Process):
    """Debian's ``prometheus`` with ``config`` (a dict) and optional rule files."""

    binary = "prometheus"

    def __init__(self, directory: Path, config: dict[str, Any]) -> None:
        super().__init__(directory)
        self.config = config

    def args(self) -> list[str]:
        config_file = self.directory / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(self.config))
        return [
            f"--config.file={config_file}",
            f"--storage.tsdb.path={self.directory / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]

    async def api(self, path: str, **params: str) -> Any:
        """``GET /api/v1/<path>``; the ``data`` of a successful answer."""
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{self.url}/api/v1/{path}", params=params) as resp,
        ):
            doc = await resp.json()
        assert doc.get("status") == "success", f"{path} {params}: {doc}"
        return doc["data"]

    async def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result vector (``[]`` when it has no data)."""
        data = await self.api("query", query=expr)
        return list(data["result"]) if data["resultType"] == "vector" else [data["result"]]


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout: float, what: str, interval: float = 0.1
) -> None:
    """Poll ``check`` until it is true; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not in {timeout:g}s: {what}")
        await asyncio.sleep(interval)
