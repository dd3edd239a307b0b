"""A real MCP server (the ``mcp`` package's MCPServer, formerly FastMCP) for the gateway tests.

Run as a script it serves stdio and appends the name of every tool it runs to the file named
by its first argument, so a test can tell whether a call reached it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError


def build(record: Callable[[str], None]) -> MCPServer:
    """The server: ``echo``, ``send_email`` and ``fail`` tools, a resource and a prompt."""
    server = MCPServer("toy")

    @server.tool()
    def echo(text: str) -> str:
        """Return the text."""
        record("echo")
        return text

    @server.tool()
    def send_email(to: str, body: str) -> str:
        """Pretend to send an email."""
        record("send_email")
        return f"sent {len(body)} characters to {to}"

    @server.tool()
    def fail(reason: str) -> str:
        """Always fail."""
        record("fail")
        raise ToolError(reason)

    @server.resource("toy://motd")
    def motd() -> str:
        """Message of the day."""
        return "hello from toy"

    @server.prompt()
    def greet(name: str) -> str:
        """A greeting prompt."""
        return f"Say hello to {name}"

    return server


def main() -> None:
    calls = Path(sys.argv[1])

    def record(tool: str) -> None:
        with calls.open("a", encoding="utf-8") as f:
            f.write(tool + "\n")

    build(record).run()


if __name__ == "__main__":
    main()
