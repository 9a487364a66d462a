#!/usr/bin/env python3
"""Drive memoryd's A2A agent with the official Python SDK (`a2a-sdk` on PyPI) as a real client.

Usage (the python is the venv from scripts/py-clients.sh):

    PY=$(scripts/py-clients.sh)
    $PY tests/py/a2a_client.py --url http://127.0.0.1:PORT [--token T]

Checks, in order: the Agent Card resolves from BASE/.well-known/agent-card.json and the SDK picks
its A2A 1.0 JSON-RPC transport for it; the card lists skills `remember` and `recall`; SendMessage
with a text part (contextId py-a2a) returns a completed Task; SendMessage with a data part
{"skill": "recall", ...} in the same context returns a completed Task whose artifacts mention
"5th"; GetTask on the first task; ListTasks by contextId finds it; GetTask on an unknown id raises
TaskNotFoundError (JSON-RPC -32001); CancelTask on the completed task raises
TaskNotCancelableError (-32002); an unknown method is answered with -32601 (raw JSON-RPC, not
via the SDK). When the card advertises streaming (and --streaming is not off) a recall is also
sent as SendStreamingMessage (SSE) and must end in a completed task mentioning "5th".

Prints one JSON summary line on stdout; exits 0 when every check passed, 1 on a failed check
(the message names it), 2 on bad usage. `--trace` logs every HTTP exchange to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from importlib.metadata import version
from typing import Any

import httpx
from google.protobuf.json_format import MessageToDict, ParseDict

from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.client.transports.jsonrpc import JsonRpcTransport
from a2a.types.a2a_pb2 import (
    AgentCard,
    CancelTaskRequest,
    GetTaskRequest,
    ListTasksRequest,
    SendMessageRequest,
    StreamResponse,
    Task,
    TaskState,
)
from a2a.utils.errors import A2AError, TaskNotCancelableError, TaskNotFoundError

CONTEXT_ID = "py-a2a"
FACT = "Invoices are due on the 5th of each month"
NEEDLE = "5th"


class CheckFailed(Exception):
    pass


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise CheckFailed(msg)


def log(msg: str) -> None:
    print(f"a2a_client: {msg}", file=sys.stderr, flush=True)


class TracingTransport(httpx.AsyncBaseTransport):
    """Logs each HTTP request and its response to stderr (SSE bodies are logged whole, at the end)."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        headers = {k: ("<redacted>" if k.lower() == "authorization" else v) for k, v in request.headers.items()}
        body = request.content.decode("utf-8", "replace") if request.content else ""
        log(f">>> {request.method} {request.url} {json.dumps(headers)}\n    {body}")
        response = await self.inner.handle_async_request(request)
        content = await response.aread()
        log(f"<<< {response.status_code} {json.dumps(dict(response.headers))}\n    {content.decode('utf-8', 'replace')}")
        return httpx.Response(
            status_code=response.status_code,
            headers=response.headers,
            content=content,
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self.inner.aclose()


def state_name(state: int) -> str:
    return TaskState.Name(state)


def task_text(task: Task) -> str:
    """Every text the task carries: artifact parts (text, or data as JSON) and the status message."""
    out: list[str] = []

    def parts_text(parts: Any) -> None:
        for p in parts:
            kind = p.WhichOneof("content")
            if kind == "text":
                out.append(p.text)
            elif kind == "data":
                out.append(json.dumps(MessageToDict(p.data)))

    for artifact in task.artifacts:
        parts_text(artifact.parts)
    if task.status.HasField("message"):
        parts_text(task.status.message.parts)
    return "\n".join(out)


def user_message(parts: list[dict[str, Any]]) -> SendMessageRequest:
    return ParseDict(
        {
            "message": {
                "messageId": str(uuid.uuid4()),
                "contextId": CONTEXT_ID,
                "role": "ROLE_USER",
                "parts": parts,
                # A2A 1.0 has no sender field on Message; free-form metadata is where a name goes.
                "metadata": {"sender": {"name": "py-a2a-client"}},
            },
            "configuration": {"acceptedOutputModes": ["text/plain", "application/json"]},
        },
        SendMessageRequest(),
    )


async def send_for_task(client: Any, request: SendMessageRequest, label: str) -> tuple[Task, list[str]]:
    """Send via the SDK's high-level client; fold the events into the final Task."""
    task: Task | None = None
    kinds: list[str] = []
    async for event in client.send_message(request):
        assert isinstance(event, StreamResponse)
        kind = event.WhichOneof("payload")
        kinds.append(kind or "?")
        if kind == "task":
            task = Task()
            task.CopyFrom(event.task)
        elif kind == "message":
            raise CheckFailed(f"{label}: agent answered with a Message, expected a Task: {MessageToDict(event.message)}")
        elif kind == "status_update":
            check(task is not None, f"{label}: a statusUpdate arrived before any task")
            task.status.CopyFrom(event.status_update.status)
        elif kind == "artifact_update":
            check(task is not None, f"{label}: an artifactUpdate arrived before any task")
            art = event.artifact_update.artifact
            existing = next((a for a in task.artifacts if a.artifact_id == art.artifact_id), None)
            if existing is not None and event.artifact_update.append:
                existing.parts.extend(art.parts)
            elif existing is not None:
                existing.CopyFrom(art)
            else:
                task.artifacts.append(art)
    check(task is not None, f"{label}: no task in the response (events: {kinds})")
    return task, kinds


def expect_completed(task: Task, label: str) -> None:
    check(bool(task.id), f"{label}: task has no id")
    check(task.context_id == CONTEXT_ID, f"{label}: task contextId {task.context_id!r} != {CONTEXT_ID!r}")
    check(
        task.status.state == TaskState.TASK_STATE_COMPLETED,
        f"{label}: task state {state_name(task.status.state)}, expected TASK_STATE_COMPLETED: {task_text(task)[:300]}",
    )


async def raw_rpc(http: httpx.AsyncClient, url: str, method: str, params: Any) -> tuple[int, Any]:
    body = {"jsonrpc": "2.0", "id": str(uuid.uuid4()), "method": method, "params": params}
    r = await http.post(url, json=body)
    try:
        return r.status_code, r.json()
    except ValueError:
        return r.status_code, r.text


async def run(args: argparse.Namespace, summary: dict[str, Any]) -> None:
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    http = httpx.AsyncClient(
        headers=headers,
        timeout=httpx.Timeout(args.timeout),
        transport=TracingTransport() if args.trace else None,
    )
    try:
        # ClientFactory stamps `A2A-Version: 1.0` on the shared httpx client here, before the
        # card is fetched, so the card request carries it too.
        factory = ClientFactory(ClientConfig(httpx_client=http, streaming=False))

        card: AgentCard = await A2ACardResolver(http, args.url).get_agent_card()
        summary["card"] = {
            "name": card.name,
            "interfaces": [MessageToDict(i) for i in card.supported_interfaces],
            "streaming": card.capabilities.streaming,
            "security_schemes": sorted(card.security_schemes.keys()),
        }
        skills = sorted({s.id for s in card.skills} | {s.name for s in card.skills})
        summary["skills"] = skills
        for want in ("remember", "recall"):
            check(want in skills, f"agent card lacks skill {want!r}: {skills}")

        client = factory.create(card)
        transport = client._transport  # noqa: SLF001 - which protocol version the SDK chose
        inner = getattr(transport, "_base", transport)  # TenantTransportDecorator wraps
        summary["sdk_transport"] = type(inner).__name__
        check(
            type(inner) is JsonRpcTransport,
            f"SDK chose {type(inner).__name__} (not the A2A 1.0 JsonRpcTransport): the card's interfaces "
            f"{summary['card']['interfaces']} do not offer JSONRPC at protocolVersion 1.0",
        )
        rpc_url = inner.url
        summary["rpc_url"] = rpc_url

        async with client:
            first, kinds = await send_for_task(client, user_message([{"text": FACT}]), "SendMessage(remember)")
            expect_completed(first, "SendMessage(remember)")
            summary["remember"] = {"task_id": first.id, "events": kinds, "text": task_text(first)[:200]}

            recall_req = user_message([{"data": {"skill": "recall", "query": "when are invoices due", "k": 3}}])
            second, kinds = await send_for_task(client, recall_req, "SendMessage(recall)")
            expect_completed(second, "SendMessage(recall)")
            text = task_text(second)
            check(NEEDLE in text, f"recall task's artifacts lack {NEEDLE!r}: {text[:500]}")
            summary["recall"] = {"task_id": second.id, "events": kinds, "text": text[:300]}

            got = await client.get_task(GetTaskRequest(id=first.id))
            check(got.id == first.id, f"GetTask returned task {got.id!r}, asked for {first.id!r}")
            check(
                got.status.state == TaskState.TASK_STATE_COMPLETED,
                f"GetTask: state {state_name(got.status.state)}, expected TASK_STATE_COMPLETED",
            )
            summary["get_task"] = {"id": got.id, "state": state_name(got.status.state), "artifacts": len(got.artifacts)}

            listed = await client.list_tasks(ListTasksRequest(context_id=CONTEXT_ID))
            ids = [t.id for t in listed.tasks]
            check(first.id in ids, f"ListTasks(contextId={CONTEXT_ID}) lacks {first.id}: {ids[:10]}")
            check(second.id in ids, f"ListTasks(contextId={CONTEXT_ID}) lacks {second.id}: {ids[:10]}")
            summary["list_tasks"] = {"count": len(ids), "total_size": listed.total_size, "page_size": listed.page_size}

            errors: dict[str, Any] = {}
            missing = f"no-such-task-{uuid.uuid4()}"
            try:
                await client.get_task(GetTaskRequest(id=missing))
                raise CheckFailed(f"GetTask({missing}) succeeded, expected TaskNotFoundError (-32001)")
            except TaskNotFoundError as e:
                errors["get_task_unknown"] = {"error": "TaskNotFoundError", "code": -32001, "message": e.message}
            except A2AError as e:
                raise CheckFailed(f"GetTask(unknown id) raised {type(e).__name__}, expected TaskNotFoundError") from e

            try:
                await client.cancel_task(CancelTaskRequest(id=first.id))
                raise CheckFailed("CancelTask on a completed task succeeded, expected TaskNotCancelableError (-32002)")
            except TaskNotCancelableError as e:
                errors["cancel_completed"] = {"error": "TaskNotCancelableError", "code": -32002, "message": e.message}
            except A2AError as e:
                raise CheckFailed(
                    f"CancelTask(completed) raised {type(e).__name__}, expected TaskNotCancelableError"
                ) from e

            status, body = await raw_rpc(http, rpc_url, "NoSuchMethod", {})
            check(status == 200, f"unknown method: HTTP {status}, expected 200 with a JSON-RPC error: {body}")
            code = body.get("error", {}).get("code") if isinstance(body, dict) else None
            check(code == -32601, f"unknown method: expected error code -32601, got {body}")
            errors["unknown_method"] = {"code": code, "http_status": status}
            summary["errors"] = errors

        if args.streaming == "on" or (args.streaming == "auto" and card.capabilities.streaming):
            check(card.capabilities.streaming, "--streaming on, but the card does not advertise capabilities.streaming")
            sfactory = ClientFactory(ClientConfig(httpx_client=http, streaming=True))
            async with sfactory.create(card) as sclient:
                req = user_message([{"data": {"skill": "recall", "query": "when are invoices due", "k": 3}}])
                task, kinds = await send_for_task(sclient, req, "SendStreamingMessage(recall)")
                expect_completed(task, "SendStreamingMessage(recall)")
                text = task_text(task)
                check(NEEDLE in text, f"streamed recall lacks {NEEDLE!r}: {text[:500]}")
                summary["streaming"] = {"task_id": task.id, "events": kinds}
        else:
            summary["streaming"] = "skipped"
    finally:
        await http.aclose()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True, help="agent base URL; the card is at URL/.well-known/agent-card.json")
    p.add_argument("--token", help="bearer token, sent as Authorization on every request")
    p.add_argument("--streaming", choices=["auto", "on", "off"], default="auto",
                   help="also check SendStreamingMessage: auto = when the card advertises streaming")
    p.add_argument("--timeout", type=float, default=60.0, help="per-request timeout, seconds")
    p.add_argument("--trace", action="store_true", help="log every HTTP request/response to stderr")
    args = p.parse_args()

    summary: dict[str, Any] = {"client": "a2a-sdk", "sdk_version": version("a2a-sdk")}
    start = time.monotonic()
    try:
        asyncio.run(run(args, summary))
        summary["ok"] = True
        code = 0
    except Exception as e:  # noqa: BLE001 - report whatever ended the run
        summary["ok"] = False
        summary["error"] = str(e) if isinstance(e, CheckFailed) else f"{type(e).__name__}: {e}"
        log(f"FAILED: {summary['error']}")
        code = 1
    summary["seconds"] = round(time.monotonic() - start, 3)
    print(json.dumps(summary), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
