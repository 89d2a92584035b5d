"""The official Python MCP SDK's Streamable HTTP client against the service's /mcp endpoint, as
an MCP client application uses it: connect, list the tools, call run_python once per entry of a
plan. Run by the Rust tests (tests/integration/mcp.rs, tests/lambda_rie.rs) with the tools venv's
Python (`make tools`):

    .tools/venv/bin/python tests/mcp/client.py URL [--api-key KEY] [--mode auto|legacy] < PLAN

PLAN is a JSON list of run_python arguments; a `session` of "$previous" is replaced by the
session id the previous call's result names, as a model keeps it between calls. Prints one JSON object on stdout:
{"server": {...}, "tools": [Tool...], "results": [CallToolResult...]}, each as the SDK parsed
it (camelCase, as on the wire). `--mode legacy` connects with the initialize handshake (what
most MCP applications still do); `auto` (the SDK's default) tries the newer discovery first.
"""

import argparse
import asyncio
import json
import sys

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


def _dump(model):
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def _with_session(arguments, previous):
    """`arguments`, its "$previous" session replaced by the one `previous` ran in."""
    if arguments.get("session") != "$previous":
        return arguments
    session = (previous.structured_content or {}).get("session") or {}
    return {**arguments, "session": session.get("id")}


async def _run(url, api_key, mode, plan):
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    # The SDK's own default timeouts, with the service's API key on every request.
    timeout = httpx2.Timeout(30.0, read=300.0)
    async with httpx2.AsyncClient(headers=headers, timeout=timeout) as http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(transport, mode=mode) as client:
            tools = await client.list_tools()
            results = []
            for arguments in plan:
                arguments = _with_session(arguments, results[-1] if results else None)
                results.append(await client.call_tool("run_python", arguments))
            server = client.server_info
            protocol = client.protocol_version
    return {
        "protocol": protocol,
        "server": _dump(server) if server is not None else None,
        "tools": [_dump(tool) for tool in tools.tools],
        "results": [_dump(result) for result in results],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--api-key", default="")
    parser.add_argument("--mode", default="auto", choices=["auto", "legacy"])
    options = parser.parse_args()
    plan = json.load(sys.stdin)
    report = asyncio.run(_run(options.url, options.api_key, options.mode, plan))
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()
