"""Server→client side channels, with the TypeScript MCP SDK server (npm @modelcontextprotocol/sdk) behind
real Envoy and the real filter (policies/side_channels.yaml).

- Tasks (2025-11-25): a task belongs to the identity whose request created it; tasks/get|result|cancel by
  anyone else, or for an id Grantwall never saw created, are refused; tasks/list shows only one's own.
- Sampling with tools: a client's sampling response whose tool_use names a tool the caller may not call
  is refused, so the server never runs it.
- URL elicitation: only hosts on the GrantwallToolPolicy's allowlist reach the client.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import httpx
import pytest

from .clients import ACCEPT, LEGACY, parse_jsonrpc_payload, ssl_context
from .ts_upstream import start_ts_server, ts_server_missing

POLICY = Path(__file__).with_name("policies") / "side_channels.yaml"


@pytest.fixture(scope="module")
def ts_upstream(e2e_dir):
    missing = ts_server_missing()
    if missing:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true and {missing}", pytrace=False)
        pytest.skip(f"{missing} (make ts-server)")
    server = start_ts_server(e2e_dir / "upstream-ts-side", script="side_channels.mjs", mode="stateful")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def envoy(start_envoy, compile_policy, ts_upstream):
    return start_envoy(compile_policy(POLICY), upstream=ts_upstream)


@pytest.fixture
def ts_log(ts_upstream):
    ts_upstream.log.clear()
    return ts_upstream.log


class Session:
    """A 2025-11-25 session by hand against the TS server, as one identity."""

    def __init__(self, envoy, pki, cert, capabilities=None, *, url=None):
        self.url = url or envoy.url()
        verify = ssl_context(pki.ca_cert, cert) if pki else False
        self.http = httpx.Client(verify=verify, trust_env=False, timeout=15)
        self.h = {"content-type": "application/json", "accept": ACCEPT}
        init = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": LEGACY, "capabilities": capabilities or {}, "clientInfo": {"name": "t", "version": "0"}}}
        r = self.http.post(self.url, content=json.dumps(init), headers=self.h)
        assert r.status_code == 200, r.text
        self.h.update({"mcp-session-id": r.headers["mcp-session-id"], "mcp-protocol-version": LEGACY})
        self.post({"jsonrpc": "2.0", "method": "notifications/initialized"})

    @classmethod
    def direct(cls, url):
        """Straight to the upstream, bypassing Envoy (controls only)."""
        return cls(None, None, None, url=url)

    def post(self, msg) -> httpx.Response:
        return self.http.post(self.url, content=json.dumps(msg), headers=self.h)

    def rpc(self, method, params, id=1) -> dict:
        r = self.post({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
        msgs = [m for m in parse_jsonrpc_payload(r.headers.get("content-type", ""), r.content) if "id" in m]
        return msgs[-1]

    def close(self):
        self.http.close()


def test_tasks_belong_to_their_creator(envoy, pki, client_cert, ts_log, ts_upstream):
    alice = Session(envoy, pki, client_cert("alice"))
    bob = Session(envoy, pki, client_cert("bob"))
    try:
        created = alice.rpc("tools/call", {"name": "slow-job", "arguments": {"ms": 100}, "task": {"ttl": 60000}}, id="c1")
        task_id = created["result"]["task"]["taskId"]
        mine = bob.rpc("tools/call", {"name": "slow-job", "arguments": {"ms": 100}, "task": {"ttl": 60000}}, id="c2")
        bob_task = mine["result"]["task"]["taskId"]
        ts_log.clear()
        for method in ("tasks/get", "tasks/result", "tasks/cancel"):
            refused = bob.rpc(method, {"taskId": task_id}, id="b1")
            assert refused["error"]["code"] == 403 and refused["error"]["data"] == {"reason": "task-foreign"}, method
        unknown = alice.rpc("tasks/get", {"taskId": "no-such-task"}, id="a0")
        assert unknown["error"]["data"] == {"reason": "task-unknown"}
        assert ts_log.rpc_methods() == []                 # none of it reached the server
        got = alice.rpc("tasks/get", {"taskId": task_id}, id="a1")
        assert got["result"]["taskId"] == task_id
        listed = {t["taskId"] for t in alice.rpc("tasks/list", {}, id="a2")["result"]["tasks"]}
        assert task_id in listed and bob_task not in listed
        listed = {t["taskId"] for t in bob.rpc("tasks/list", {}, id="b2")["result"]["tasks"]}
        assert bob_task in listed and task_id not in listed
        # The control: the server itself shares tasks across sessions and lists both to anyone.
        direct = Session.direct(ts_upstream.url)
        assert {task_id, bob_task} <= {t["taskId"] for t in direct.rpc("tasks/list", {}, id="d1")["result"]["tasks"]}
        direct.close()
    finally:
        alice.close()
        bob.close()


def run_tool_with_server_request(session: Session, tool: str, arguments: dict, answer):
    """Call `tool` on an SSE stream; when the server's request arrives, `answer(request)` runs on its own
    thread while the stream stays open. Returns (server requests seen, final result message) once every
    answer has finished: the stream can end before an answer's own POST has returned."""
    seen, final, answering = [], {}, []
    call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": tool, "arguments": arguments}}
    with session.http.stream("POST", session.url, content=json.dumps(call), headers=session.h) as resp:
        data = []
        for line in resp.iter_lines():
            if line.startswith("data:"):
                data.append(line[5:].strip())
            elif line == "" and data:
                msg = json.loads("\n".join(data))
                data = []
                if "method" in msg and "id" in msg:
                    seen.append(msg)
                    answering.append(threading.Thread(target=answer, args=(msg,)))
                    answering[-1].start()
                elif msg.get("id") == 7:
                    final = msg
    for thread in answering:
        thread.join(timeout=30)
        assert not thread.is_alive(), "an answer to a server request did not finish in 30 s"
    return seen, final


def test_sampling_tool_use_for_a_denied_tool_is_refused(envoy, pki, client_cert, ts_log):
    carol = Session(envoy, pki, client_cert("carol"), capabilities={"sampling": {"tools": {}}})
    replies = []

    def model_chooses(tool):
        def answer(request):
            assert request["method"] == "sampling/createMessage"
            assert {t["name"] for t in request["params"]["tools"]} == {"echo", "delete-everything"}
            reply = {"jsonrpc": "2.0", "id": request["id"], "result": {
                "role": "assistant", "model": "test-model", "stopReason": "toolUse",
                "content": [{"type": "tool_use", "id": "tu-1", "name": tool, "input": {}}]}}
            replies.append(carol.post(reply))
        return answer

    try:
        seen, final = run_tool_with_server_request(carol, "ask-model", {"prompt": "p"}, model_chooses("echo"))
        assert len(seen) == 1 and replies[-1].status_code == 202
        assert final["result"]["content"][0]["text"] == "model used echo"

        ts_log.clear()
        seen, final = run_tool_with_server_request(carol, "ask-model", {"prompt": "p"}, model_chooses("delete-everything"))
        refused = replies[-1].json()
        assert refused["error"]["code"] == 403 and refused["error"]["data"] == {"reason": "sampling-tool-denied"}
        # The server never got the answer: its request timed out, and it ran nothing the model chose.
        assert final["result"].get("isError") or "error" in final
        assert not [t for t in ts_log.tools_executed() if t.startswith("model-chose")]
        assert not [m for m in ts_log.rpc() if m.get("response")]
    finally:
        carol.close()


def test_url_elicitation_only_to_allowed_hosts(envoy, pki, client_cert, ts_log):
    carol = Session(envoy, pki, client_cert("carol"), capabilities={"elicitation": {"url": {}, "form": {}}})

    def accept(request):
        carol.post({"jsonrpc": "2.0", "id": request["id"], "result": {"action": "accept"}})

    try:
        seen, final = run_tool_with_server_request(carol, "open-url", {"url": "https://auth.example.com/login"}, accept)
        assert [s["params"]["url"] for s in seen] == ["https://auth.example.com/login"]
        assert final["result"]["content"][0]["text"] == "elicitation accept"

        for url in ("https://evil.example.net/login", "https://auth.example.com@evil.example.net/", "http://auth.example.com/"):
            seen, final = run_tool_with_server_request(carol, "open-url", {"url": url}, accept)
            assert seen == [], url                     # the client never saw the URL
            assert final["result"]["isError"] is True  # the server's request timed out
    finally:
        carol.close()
    log = envoy.wait_log_text(lambda text: text.count("elicitation-url-refused") >= 3)
    refused = [json.loads(line.split("grantwall audit ", 1)[1]) for line in log.splitlines()
               if "elicitation-url-refused" in line]
    assert {a["detail"] for a in refused} >= {"https://evil.example.net/login", "http://auth.example.com/"}


def test_ts_server_lists_are_filtered_per_caller(envoy, pki, client_cert):
    """The TS SDK answers with SSE and a Content-Length: the filtered stream must drop it and stay valid."""
    got = {}
    for who in ("alice", "carol"):
        s = Session(envoy, pki, client_cert(who))
        r = s.post({"jsonrpc": "2.0", "id": "l", "method": "tools/list", "params": {}})
        assert r.headers["content-type"].startswith("text/event-stream")
        assert "content-length" not in r.headers or int(r.headers["content-length"]) == len(r.content)
        got[who] = sorted(t["name"] for t in parse_jsonrpc_payload(r.headers["content-type"], r.content)[-1]["result"]["tools"])
        s.close()
    assert got["alice"] == ["ask-model", "delete-everything", "echo", "open-url", "slow-job"]
    assert got["carol"] == ["ask-model", "echo", "open-url"]
