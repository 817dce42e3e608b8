"""A real A2A agent (a2a-sdk 1.x server: JSON-RPC at /, the HTTP+JSON binding, the public card) for
tests/e2e/test_a2a.py. Every request that reaches it is logged as one JSON line (method, path, body, headers), so
tests assert on what the agent actually received. `--compat` serves the A2A 0.3 names and `/v1` routes too.

    python a2a_server.py --port 0 --port-file PORT --log requests.jsonl [--compat] [--signed]
"""

from __future__ import annotations

import argparse
import json
import socket

import uvicorn
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from a2a.helpers.proto_helpers import get_message_text, new_task_from_user_message, new_text_part
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes, create_rest_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import AgentCapabilities, AgentCard, AgentCardSignature, AgentInterface, AgentSkill


class EchoAgent(AgentExecutor):
    """Answers every message with a completed task whose artifact echoes the text."""

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        task = context.current_task
        if task is None:
            task = new_task_from_user_message(context.message)
            await event_queue.enqueue_event(task)
        updater = TaskUpdater(event_queue, task.id, task.context_id)
        await updater.add_artifact([new_text_part("echo: " + get_message_text(context.message))])
        await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        updater = TaskUpdater(event_queue, context.task_id, context.context_id)
        await updater.cancel()


def card(port: int, signed: bool = False) -> AgentCard:
    base = f"http://127.0.0.1:{port}"
    # A JWS-shaped signature: Grantwall never verifies it, it only must not emit an altered signed card.
    signatures = [AgentCardSignature(protected="eyJhbGciOiJFUzI1NiJ9", signature="c2lnbmVk")] if signed else []
    return AgentCard(
        signatures=signatures,
        name="agent-b",
        description="Echo agent behind Grantwall",
        version="1.0.0",
        supported_interfaces=[
            AgentInterface(url=f"{base}/", protocol_binding="JSONRPC", protocol_version="1.0"),
            AgentInterface(url=f"{base}/", protocol_binding="HTTP+JSON", protocol_version="1.0"),
        ],
        capabilities=AgentCapabilities(streaming=True, push_notifications=False),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[
            AgentSkill(id="echo", name="Echo", description="Echoes text", tags=["echo"]),
            AgentSkill(id="admin-reset", name="Reset", description="Operator only", tags=["admin"]),
        ],
    )


class RequestLog:
    """ASGI middleware: one JSON line per request, written when its body is complete."""

    def __init__(self, app, path: str) -> None:
        self.app = app
        self.path = path

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] == "/healthz":
            return await self.app(scope, receive, send)
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        with open(self.path, "a") as f:
            f.write(json.dumps({"kind": "request", "method": scope["method"], "path": scope["path"],
                                "body": body.decode("utf-8", "replace"),
                                "headers": {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}})
                    + "\n")
        sent = False

        async def replay():
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--compat", action="store_true", help="also serve A2A 0.3 (names and /v1 routes)")
    ap.add_argument("--signed", action="store_true", help="serve a card carrying a signature")
    args = ap.parse_args()
    sock = socket.socket()
    sock.bind(("127.0.0.1", args.port))
    port = sock.getsockname()[1]
    agent_card = card(port, signed=args.signed)
    handler = DefaultRequestHandler(agent_executor=EchoAgent(), task_store=InMemoryTaskStore(), agent_card=agent_card)
    routes = [Route("/healthz", lambda _r: PlainTextResponse("ok"))]
    routes += create_agent_card_routes(agent_card)
    routes += create_agent_card_routes(agent_card, card_url="/.well-known/agent.json")
    routes += create_jsonrpc_routes(handler, rpc_url="/", enable_v0_3_compat=args.compat)
    routes += create_rest_routes(handler, enable_v0_3_compat=args.compat)
    app = RequestLog(Starlette(routes=routes), args.log)
    with open(args.port_file, "w") as f:
        f.write(str(port))
    config = uvicorn.Config(app, log_level="warning", timeout_keep_alive=75)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
