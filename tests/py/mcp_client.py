#!/usr/bin/env python3
"""Drive memoryd's MCP server with the official Python SDK (`mcp` on PyPI) as a real client.

Usage (the python is the venv from scripts/py-clients.sh):

    PY=$(scripts/py-clients.sh)
    $PY tests/py/mcp_client.py --http http://127.0.0.1:PORT/mcp [--token T]
    $PY tests/py/mcp_client.py --stdio -- target/debug/memoryd mcp --data-dir DIR

Checks, in order: connect (the SDK's default `mode="auto"`: a `server/discover` probe at
2026-07-28, falling back to the `initialize` handshake; `--mode legacy` forces the handshake),
tools/list has `remember` and `recall`, `remember` stores a fact, `recall` finds it ("Tuesday"),
`recall` with bad arguments is an error (a JSON-RPC error or a CallToolResult with isError=true:
the summary says which), resources/list is non-empty and resources/read of one returns content;
on protocol 2026-07-28, `subscriptions/listen` on that resource delivers an event after a write.

Prints one JSON summary line on stdout; exits 0 when every check passed, 1 on a failed check
(the message names it), 2 on bad usage. `--trace` logs every HTTP exchange to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import anyio
import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

NEEDLE = "Tuesday"


class CheckFailed(Exception):
    pass


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise CheckFailed(msg)


def log(msg: str) -> None:
    print(f"mcp_client: {msg}", file=sys.stderr, flush=True)


class TracingTransport(httpx2.AsyncBaseTransport):
    """Logs each HTTP request and its (fully read) response to stderr."""

    def __init__(self) -> None:
        self.inner = httpx2.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        headers = {k: ("<redacted>" if k.lower() == "authorization" else v) for k, v in request.headers.items()}
        body = request.content.decode("utf-8", "replace") if request.content else ""
        log(f">>> {request.method} {request.url} {json.dumps(headers)}\n    {body}")
        response = await self.inner.handle_async_request(request)
        content = await response.aread()
        log(f"<<< {response.status_code} {json.dumps(dict(response.headers))}\n    {content.decode('utf-8', 'replace')}")
        return httpx2.Response(
            status_code=response.status_code,
            headers=response.headers,
            content=content,
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self.inner.aclose()


def result_text(result: Any) -> str:
    """Every text the CallToolResult carries: text blocks, embedded resources, structuredContent."""
    parts: list[str] = []
    for block in result.content or []:
        text = getattr(block, "text", None)
        if isinstance(text, str):
            parts.append(text)
        resource = getattr(block, "resource", None)
        if resource is not None and isinstance(getattr(resource, "text", None), str):
            parts.append(resource.text)
    if result.structured_content is not None:
        parts.append(json.dumps(result.structured_content))
    return "\n".join(parts)


async def expect_error(client: Client, args: dict[str, Any], label: str) -> dict[str, Any]:
    """Call recall with bad arguments; the error may come back either way the spec allows."""
    try:
        result = await client.call_tool("recall", args)
    except MCPError as e:
        return {"case": label, "surfaced_as": "jsonrpc_error", "code": e.code, "message": e.error.message}
    check(
        result.is_error is True,
        f"recall with bad arguments ({label}: {json.dumps(args)}) succeeded: {result_text(result)[:300]}",
    )
    return {"case": label, "surfaced_as": "tool_result_is_error", "text": result_text(result)[:200]}


async def run(args: argparse.Namespace, summary: dict[str, Any]) -> None:
    http_client: httpx2.AsyncClient | None = None
    if args.http:
        headers = {"Authorization": f"Bearer {args.token}"} if args.token else None
        http_client = httpx2.AsyncClient(
            headers=headers,
            timeout=httpx2.Timeout(30.0, read=args.timeout),
            transport=TracingTransport() if args.trace else None,
        )
        server: Any = streamable_http_client(args.http, http_client=http_client)
        summary["transport"] = "streamable-http"
    else:
        # The SDK passes only a few "safe" variables (HOME, PATH, ...) unless told: pass all of ours.
        server = StdioServerParameters(command=args.cmd[0], args=args.cmd[1:], env=dict(os.environ))
        summary["transport"] = "stdio"

    try:
        async with Client(server, mode=args.mode, cache=None, read_timeout_seconds=args.timeout) as client:
            summary["protocol_version"] = client.protocol_version
            info = client.server_info
            summary["server_info"] = info.model_dump(mode="json", exclude_none=True) if info else None
            summary["connect"] = "initialize" if client.session.initialize_result is not None else "discover"
            caps = client.server_capabilities
            summary["server_capabilities"] = caps.model_dump(mode="json", by_alias=True, exclude_none=True)
            log(f"connected: protocol {client.protocol_version} via {summary['connect']}")

            tools = await client.list_tools()
            names = sorted(t.name for t in tools.tools)
            summary["tools"] = names
            for want in ("remember", "recall"):
                check(want in names, f"tools/list lacks {want!r}: {names}")

            ns = args.namespace
            remembered = await client.call_tool(
                "remember",
                {
                    "namespace": ns,
                    "messages": [{"role": "user", "content": "The deploy key rotates every Tuesday at 09:00 UTC"}],
                },
            )
            check(not remembered.is_error, f"remember returned isError: {result_text(remembered)[:300]}")
            summary["remember"] = result_text(remembered)[:300]

            recalled = await client.call_tool("recall", {"namespace": ns, "query": "when does the deploy key rotate", "k": 3})
            text = result_text(recalled)
            check(not recalled.is_error, f"recall returned isError: {text[:300]}")
            check(NEEDLE in text, f"recall result lacks {NEEDLE!r}: {text[:500]}")
            summary["recall"] = {
                "content_types": [b.type for b in recalled.content],
                "has_structured_content": recalled.structured_content is not None,
                "text": text[:300],
            }

            summary["bad_arguments"] = [
                await expect_error(client, {"namespace": ns, "query": "deploy key", "k": -1}, "k=-1"),
                await expect_error(client, {"namespace": ns, "k": 3}, "missing query"),
            ]

            resources = await client.list_resources()
            uris = [str(r.uri) for r in resources.resources]
            summary["resources"] = uris[:20]
            check(uris, "resources/list returned no resources")
            uri = next((u for u in uris if ns in u), uris[0])
            read = await client.read_resource(uri)
            check(read.contents, f"resources/read {uri} returned no contents")
            first = read.contents[0]
            body = getattr(first, "text", None) or getattr(first, "blob", None) or ""
            check(bool(body), f"resources/read {uri} returned an empty first content")
            summary["read_resource"] = {"uri": uri, "mime_type": first.mime_type, "chars": len(body)}

            # Change notifications: on 2026-07-28, `subscriptions/listen` on the
            # namespace's resource, then a write to it must arrive as an event.
            subscribable = bool(caps.resources and caps.resources.subscribe)
            summary["subscribable"] = subscribable
            if client.protocol_version == "2026-07-28" and subscribable:
                async with client.listen(resource_subscriptions=[uri]) as sub:
                    check(uri in (sub.honored.resource_subscriptions or []), f"listen did not honour {uri}: {sub.honored}")
                    await client.call_tool(
                        "remember", {"namespace": ns, "messages": [{"content": "A change to notify about"}]}
                    )
                    with anyio.fail_after(15):
                        event = await sub.__anext__()
                    summary["listen"] = {"event": type(event).__name__, "detail": str(event)[:200]}
                    check(uri in str(event), f"the change event does not name {uri}: {event}")
    finally:
        if http_client is not None:
            await http_client.aclose()


def unwrap(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def main() -> int:
    argv = sys.argv[1:]
    cmd: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, cmd = argv[:i], argv[i + 1 :]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--http", metavar="URL", help="streamable-HTTP endpoint, e.g. http://127.0.0.1:8080/mcp")
    g.add_argument("--stdio", action="store_true", help="spawn the command after `--` and talk over its stdio")
    p.add_argument("--token", help="bearer token for --http")
    p.add_argument(
        "--mode",
        default="auto",
        help="SDK connect mode: auto (default: server/discover probe, then initialize), legacy, or 2026-07-28",
    )
    p.add_argument("--namespace", default="py-mcp")
    p.add_argument("--timeout", type=float, default=60.0, help="per-request read timeout, seconds")
    p.add_argument("--trace", action="store_true", help="log every HTTP request/response to stderr")
    args = p.parse_args(argv)
    args.cmd = cmd
    if args.stdio and not cmd:
        p.error("--stdio needs a command after `--`")
    if args.http and cmd:
        p.error("a command after `--` is only for --stdio")

    summary: dict[str, Any] = {"client": "mcp", "sdk_version": mcp_version(), "mode": args.mode}
    start = time.monotonic()
    try:
        anyio.run(run, args, summary)
        summary["ok"] = True
        code = 0
    except BaseException as e:  # noqa: BLE001 - report whatever ended the run
        e = unwrap(e)
        if isinstance(e, KeyboardInterrupt):
            raise
        summary["ok"] = False
        summary["error"] = f"{type(e).__name__}: {e}" if not isinstance(e, CheckFailed) else str(e)
        log(f"FAILED: {summary['error']}")
        code = 1
    summary["seconds"] = round(time.monotonic() - start, 3)
    print(json.dumps(summary), flush=True)
    return code


def mcp_version() -> str:
    from importlib.metadata import version

    return version("mcp")


if __name__ == "__main__":
    sys.exit(main())
