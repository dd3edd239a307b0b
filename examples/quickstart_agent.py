"""An agent agentwatch watches and can stop: run it beside `make up` (or `agentwatch up`).

    python examples/quickstart_agent.py

With no broker named, the Monitor reads the connection file `agentwatch up` writes
(~/.agentwatch/connection.json): the broker, the topic prefix and the key that signs halts.
From another shell, `agentwatch agents halt support-7 -r "testing"` stops it; run it again
and its first tool call raises AgentHalted.
"""

import asyncio

from agentwatch.sdk import AgentHalted, Monitor, PermissionRevoked


async def main() -> None:
    async with Monitor("support-7", "support") as monitor:

        @monitor.tool(risk="high", target_arg="ticket")
        async def refund(ticket: str, amount: float) -> str:
            return f"refunded {amount:.2f} on {ticket}"

        try:
            for n in range(1, 4):
                print(await refund(f"T-{n}", 20.0))  # raises AgentHalted / PermissionRevoked
                monitor.record("chat", model="gpt-4o-mini", input_tokens=900, output_tokens=120)
        except (AgentHalted, PermissionRevoked) as stopped:
            print(f"stopped by agentwatch: {stopped}")
        await monitor.flush(5.0)
        print(f"events sent: {monitor.stats['sent']}")


if __name__ == "__main__":
    asyncio.run(main())
