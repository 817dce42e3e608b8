"""A small OpenAI- and Anthropic-compatible LLM server for the e2e tests (Starlette on uvicorn).

It answers like the real APIs do, with realistic `usage`, in JSON and as SSE streams:
- POST /v1/chat/completions, /v1/completions: OpenAI shapes; a stream reports usage in a last chunk with
  `"choices": []` only when the request has `stream_options.include_usage: true` (every other chunk then
  carries `"usage": null`), then `data: [DONE]`.
- POST /v1/responses: OpenAI Responses API; a stream ends with `response.completed` carrying usage.
- POST /v1/embeddings: one vector, usage {prompt_tokens, total_tokens}.
- POST /v1/messages: Anthropic; a stream has message_start (input usage), content blocks, message_delta
  (cumulative output usage) and message_stop.
- GET /v1/models, GET /healthz.

How many tokens a response uses is set by the request header `x-test-output-tokens` (default 20), lowered to
the request's own output limit (max_tokens & co.) as a real model would stop there; input is 10 tokens.
Every request is appended to the log file as one JSON line: {method, path, body (text), accept_encoding,
content_length, headers}, so tests assert on what the upstream actually received.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import time
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

INPUT_TOKENS = 10


def build_app(log_path: Path) -> Starlette:
    def log(request: Request, body: bytes) -> None:
        with log_path.open("a") as f:
            f.write(json.dumps({"method": request.method, "path": request.url.path,
                                "body": body.decode("utf-8", "replace"), "time": time.time(),
                                "accept_encoding": request.headers.get("accept-encoding"),
                                "content_length": request.headers.get("content-length"),
                                "headers": dict(request.headers)}) + "\n")

    async def read(request: Request) -> tuple[dict, int]:
        body = await request.body()
        log(request, body)
        payload = json.loads(body)
        wanted = int(request.headers.get("x-test-output-tokens", "20"))
        for field in ("max_tokens", "max_completion_tokens", "max_output_tokens"):
            if isinstance(payload.get(field), int):
                wanted = min(wanted, payload[field])
        return payload, wanted

    def sse(events: list[tuple[str | None, str]], pause: float) -> StreamingResponse:
        async def gen():
            for name, data in events:
                prefix = f"event: {name}\n" if name else ""
                yield f"{prefix}data: {data}\n\n".encode()
                await asyncio.sleep(pause)
        return StreamingResponse(gen(), media_type="text/event-stream")

    async def chat(request: Request) -> Response:
        payload, out = await read(request)
        chat_api = request.url.path.endswith("/chat/completions")
        model = payload["model"]
        usage = {"prompt_tokens": INPUT_TOKENS, "completion_tokens": out, "total_tokens": INPUT_TOKENS + out}
        if not payload.get("stream"):
            choice = ({"index": 0, "message": {"role": "assistant", "content": "word " * out}, "finish_reason": "stop"}
                      if chat_api else {"index": 0, "text": "word " * out, "finish_reason": "stop"})
            return JSONResponse({"id": "cmpl-1", "object": "chat.completion" if chat_api else "text_completion",
                                 "created": int(time.time()), "model": model, "choices": [choice], "usage": usage})
        include = bool((payload.get("stream_options") or {}).get("include_usage"))
        obj = "chat.completion.chunk" if chat_api else "text_completion"
        events = []
        for i in range(3):
            delta = {"index": 0, "delta": {"content": f"part{i} "}, "finish_reason": None} if chat_api else \
                {"index": 0, "text": f"part{i} ", "finish_reason": None}
            chunk = {"id": "chatcmpl-1", "object": obj, "created": 1, "model": model, "choices": [delta]}
            if include:
                chunk["usage"] = None
            events.append((None, json.dumps(chunk)))
        if include:
            events.append((None, json.dumps({"id": "chatcmpl-1", "object": obj, "created": 1, "model": model,
                                             "choices": [], "usage": usage})))
        events.append((None, "[DONE]"))
        return sse(events, float(request.headers.get("x-test-pause", "0.05")))

    async def responses(request: Request) -> Response:
        payload, out = await read(request)
        usage = {"input_tokens": INPUT_TOKENS, "output_tokens": out, "total_tokens": INPUT_TOKENS + out,
                 "output_tokens_details": {"reasoning_tokens": 0}}
        resp = {"id": "resp_1", "object": "response", "model": payload["model"], "status": "completed",
                "output": [{"type": "message", "role": "assistant",
                            "content": [{"type": "output_text", "text": "word " * out}]}], "usage": usage}
        if not payload.get("stream"):
            return JSONResponse(resp)
        events = [("response.created", json.dumps({"type": "response.created", "response": {**resp, "status": "in_progress", "usage": None}})),
                  ("response.output_text.delta", json.dumps({"type": "response.output_text.delta", "delta": "word"})),
                  ("response.completed", json.dumps({"type": "response.completed", "response": resp}))]
        return sse(events, 0.02)

    async def embeddings(request: Request) -> Response:
        payload, _ = await read(request)
        return JSONResponse({"object": "list", "model": payload["model"],
                             "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2, 0.3]}],
                             "usage": {"prompt_tokens": INPUT_TOKENS, "total_tokens": INPUT_TOKENS}})

    async def messages(request: Request) -> Response:
        payload, out = await read(request)
        message = {"id": "msg_1", "type": "message", "role": "assistant", "model": payload["model"],
                   "content": [{"type": "text", "text": "word " * out}], "stop_reason": "end_turn",
                   "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": out}}
        if not payload.get("stream"):
            return JSONResponse(message)
        start = {**message, "content": [], "stop_reason": None, "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": 1}}
        events = [("message_start", json.dumps({"type": "message_start", "message": start})),
                  ("content_block_start", json.dumps({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})),
                  ("content_block_delta", json.dumps({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "word"}})),
                  ("content_block_stop", json.dumps({"type": "content_block_stop", "index": 0})),
                  ("message_delta", json.dumps({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": out}})),
                  ("message_stop", json.dumps({"type": "message_stop"}))]
        return sse(events, 0.02)

    async def models(request: Request) -> Response:
        log(request, b"")
        return JSONResponse({"object": "list", "data": [{"id": "gpt-4o", "object": "model"}]})

    async def other(request: Request) -> Response:
        log(request, await request.body())
        return JSONResponse({"ok": True})

    async def healthz(_: Request) -> Response:
        return Response("ok")

    return Starlette(routes=[
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/completions", chat, methods=["POST"]),
        Route("/v1/responses", responses, methods=["POST"]),
        Route("/v1/embeddings", embeddings, methods=["POST"]),
        Route("/v1/messages", messages, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/{rest:path}", other, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
    ])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--log", required=True)
    args = parser.parse_args()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    Path(args.port_file).write_text(str(sock.getsockname()[1]))
    config = uvicorn.Config(build_app(Path(args.log)), log_level="warning", timeout_keep_alive=75)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
