"""Agent-to-agent grants with a real a2a-sdk 1.x agent and client behind real Envoy and the real filter.

Agent B (tests/e2e/a2a_server.py) sits behind Envoy's upstream cluster; GrantwallA2APolicy lets alice
message it (send, stream, her own tasks) and see only the `echo` skill; bob may send and read tasks;
carol has no grant. Every refusal is checked on what the agent actually received (nothing), not only on
what the client got back.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time

import httpx
import pytest

from .a2a_upstream import start_a2a_server
from .clients import ssl_context
from .upstream import UpstreamLog
# examples/envoy.yaml routes everything to this cluster; the agent claims it (grantwall.io/envoy-clusters).
CLUSTER = "outbound|8000||mcp-server.tools.svc.cluster.local"

POLICY = f"""
apiVersion: grantwall.io/v1alpha1
kind: GrantwallA2AAgent
metadata:
  name: agent-b
  namespace: agents
  annotations: {{grantwall.io/envoy-clusters: "{CLUSTER}"}}
spec:
  hostname: agent-b.agents.example
  port: 9999
  card: {{publicUrl: "https://gateway.example/agents/b"}}
  pushNotifications: {{urlPrefixes: ["https://hooks.example.com/a2a/"]}}
---
apiVersion: grantwall.io/v1alpha1
kind: GrantwallA2APolicy
metadata: {{name: agent-b-callers, namespace: agents}}
spec:
  targetRefs: [{{group: grantwall.io, kind: GrantwallA2AAgent, name: agent-b}}]
  rules:
  - name: alice-messages-b
    source: {{type: ServiceAccount, serviceAccount: {{name: alice}}}}
    operations: [SendMessage, SendStreamingMessage, GetTask, CancelTask, SubscribeToTask, ListTasks,
                 CreateTaskPushNotificationConfig]
    skills: [echo]
  - name: bob-sends
    source: {{type: ServiceAccount, serviceAccount: {{name: bob}}}}
    operations: [SendMessage, GetTask]
  - name: dave-every-task-operation
    source: {{type: ServiceAccount, serviceAccount: {{name: dave}}}}
    operations: [SendMessage, GetTask, CancelTask, SubscribeToTask, CreateTaskPushNotificationConfig,
                 GetTaskPushNotificationConfig, ListTaskPushNotificationConfigs, DeleteTaskPushNotificationConfig]
"""


@pytest.fixture(scope="module", params=[True, False], ids=["compat-0.3-on", "compat-0.3-off"])
def agent_b(request, e2e_dir):
    server = start_a2a_server(e2e_dir / f"a2a-b-{request.param}", compat=request.param)
    server.compat = request.param
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def envoy(start_envoy, compile_policy, agent_b):
    return start_envoy(compile_policy(POLICY), upstream=agent_b)


@pytest.fixture
def received(agent_b):
    agent_b.log.clear()
    return agent_b.log


class Caller:
    """Raw HTTP as one identity (mTLS client certificate)."""

    def __init__(self, envoy, pki, cert):
        self.envoy = envoy
        self.http = httpx.Client(verify=ssl_context(pki.ca_cert, cert), trust_env=False, timeout=15)

    def rpc(self, method: str, params: dict, id_=1) -> dict:
        r = self.http.post(self.envoy.url("/"), json={"jsonrpc": "2.0", "id": id_, "method": method, "params": params},
                           headers={"A2A-Version": "0.3" if "/" in method else "1.0"})
        assert r.status_code == 200, r.text
        return r.json()

    def send(self, text: str = "hi", legacy: bool = False, **message) -> dict:
        if legacy:
            msg = {"kind": "message", "role": "user", "messageId": f"m-{text}", "parts": [{"kind": "text", "text": text}]}
            return self.rpc("message/send", {"message": {**msg, **message}})
        msg = {"role": "ROLE_USER", "messageId": f"m-{text}", "parts": [{"text": text}]}
        return self.rpc("SendMessage", {"message": {**msg, **message}})


def new_task(caller: Caller) -> str:
    out = caller.send("make-task")
    return out["result"]["task"]["id"]


def rpc_methods(log: UpstreamLog) -> list[str]:
    out = []
    for e in log.entries("request"):
        try:
            out.append(json.loads(e["body"]).get("method"))
        except ValueError:
            out.append(None)
    return out


def sdk_card(url: str, binding: str):
    from a2a.types import AgentCapabilities, AgentCard, AgentInterface
    return AgentCard(name="agent-b", version="1", capabilities=AgentCapabilities(streaming=True),
                     supported_interfaces=[AgentInterface(url=url, protocol_binding=binding, protocol_version="1.0")])


async def sdk_exchange(envoy, pki, cert, *, binding: str, streaming: bool) -> list:
    """The real a2a-sdk client: one message, every event it yields."""
    from a2a.client import ClientConfig, ClientFactory
    from a2a.helpers.proto_helpers import new_text_message
    from a2a.types import Role, SendMessageRequest

    async with httpx.AsyncClient(verify=ssl_context(pki.ca_cert, cert), trust_env=False, timeout=15) as http:
        config = ClientConfig(httpx_client=http, streaming=streaming, supported_protocol_bindings=[binding])
        client = ClientFactory(config).create(sdk_card(envoy.url("/"), binding))
        request = SendMessageRequest(message=new_text_message("hello b", role=Role.ROLE_USER))
        return [event async for event in client.send_message(request)]


@pytest.mark.parametrize("binding", ["JSONRPC", "HTTP+JSON"])
@pytest.mark.parametrize("streaming", [False, True], ids=["send", "stream"])
def test_allowed_pair_works_with_the_sdk_client(envoy, pki, client_cert, received, binding, streaming):
    events = asyncio.run(sdk_exchange(envoy, pki, client_cert("alice"), binding=binding, streaming=streaming))
    text = json.dumps([str(e) for e in events])
    assert "echo: hello b" in text
    paths = [(e["method"], e["path"]) for e in received.entries("request")]
    if binding == "JSONRPC":
        assert rpc_methods(received) == ["SendStreamingMessage" if streaming else "SendMessage"]
    else:
        assert paths == [("POST", "/message:stream" if streaming else "/message:send")]


@pytest.mark.parametrize("binding", ["JSONRPC", "HTTP+JSON"])
def test_denied_pair_never_reaches_the_agent(envoy, pki, client_cert, received, binding):
    from a2a.client import A2AClientError
    with pytest.raises(A2AClientError):
        asyncio.run(sdk_exchange(envoy, pki, client_cert("carol"), binding=binding, streaming=False))
    assert received.entries("request") == []
    # Bob may send but not stream.
    with pytest.raises(A2AClientError):
        asyncio.run(sdk_exchange(envoy, pki, client_cert("bob"), binding=binding, streaming=True))
    assert received.entries("request") == []


def test_both_naming_schemes_are_one_grant(envoy, agent_b, pki, client_cert, received):
    carol = Caller(envoy, pki, client_cert("carol"))
    for method in ["SendMessage", "message/send", "message/stream", "SendStreamingMessage"]:
        out = carol.rpc(method, {"message": {"messageId": "m", "role": "user", "parts": []}}, id_="x")
        assert out["id"] == "x" and out["error"]["code"] == 403, out
        assert out["error"]["data"]["reason"] == "default-deny"
    assert received.entries("request") == []
    alice = Caller(envoy, pki, client_cert("alice"))
    out = alice.send("legacy", legacy=True)
    if agent_b.compat:
        assert out["result"]["kind"] == "task", out
        assert rpc_methods(received) == ["message/send"]
    else:
        assert "error" in out  # the agent itself refuses 0.3 without its compat layer
    # Unknown methods, notifications and batches are refused on an A2A agent.
    received.clear()
    out = alice.rpc("tasks/list", {})
    assert out["error"]["code"] == -32601
    # Refused in A2A's JSON-RPC shape (HTTP 200, the request's id where it could be read).
    r = alice.http.post(envoy.url("/"), json=[{"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": "a"}}])
    assert r.status_code == 200 and r.json()["error"]["code"] == -32600
    assert r.json()["error"]["data"]["reason"] == "batch-refused"
    r = alice.http.post(envoy.url("/"), content=b'{"jsonrpc":"2.0","id":1,"method":"GetTask","params":{"id":"a","id":"b"}}',
                        headers={"content-type": "application/json"})
    assert r.json()["error"]["code"] == -32600 and r.json()["error"]["data"]["reason"] == "duplicate-key"
    assert received.entries("request") == []


def test_foreign_tasks_are_refused(envoy, pki, client_cert, received):
    alice = Caller(envoy, pki, client_cert("alice"))
    bob = Caller(envoy, pki, client_cert("bob"))
    task = new_task(alice)
    assert alice.rpc("GetTask", {"id": task})["result"]["id"] == task
    received.clear()
    for caller_out in [bob.rpc("GetTask", {"id": task}),
                       bob.rpc("tasks/get", {"id": task}),
                       bob.send("sneak", taskId=task),
                       bob.send("ref", referenceTaskIds=[task]),
                       alice.rpc("GetTask", {"id": "never-seen"})]:
        assert caller_out["error"]["code"] == -32001, caller_out  # TaskNotFound: existence not revealed
    r = bob.http.get(envoy.url(f"/tasks/{task}"))
    assert r.status_code == 404 and r.json()["error"]["status"] == "NOT_FOUND"
    assert received.entries("request") == []
    # The owner's own REST read reaches the agent.
    r = alice.http.get(envoy.url(f"/tasks/{task}"), headers={"A2A-Version": "1.0"})
    assert r.status_code == 200 and r.json()["id"] == task, r.text
    assert [(e["method"], e["path"]) for e in received.entries("request")] == [("GET", f"/tasks/{task}")]


def test_every_task_operation_on_a_foreign_task_is_refused_even_when_granted(envoy, pki, client_cert, received):
    """dave may use every task operation, but only on his own tasks: on alice's he gets TaskNotFound in both
    naming generations and the REST binding, and the agent never sees the request."""
    alice = Caller(envoy, pki, client_cert("alice"))
    dave = Caller(envoy, pki, client_cert("dave"))
    task = new_task(alice)
    received.clear()
    hook = "https://hooks.example.com/a2a/cb"
    attempts = [
        ("CancelTask", {"id": task}), ("tasks/cancel", {"id": task}),
        ("SubscribeToTask", {"id": task}), ("tasks/resubscribe", {"id": task}),
        ("CreateTaskPushNotificationConfig", {"taskId": task, "url": hook}),
        ("tasks/pushNotificationConfig/set", {"taskId": task, "pushNotificationConfig": {"url": hook}}),
        ("GetTaskPushNotificationConfig", {"taskId": task, "id": "cfg-1"}),
        ("tasks/pushNotificationConfig/get", {"id": task}),
        ("ListTaskPushNotificationConfigs", {"taskId": task}), ("tasks/pushNotificationConfig/list", {"id": task}),
        ("DeleteTaskPushNotificationConfig", {"taskId": task, "id": "cfg-1"}),
        ("tasks/pushNotificationConfig/delete", {"id": task, "pushNotificationConfigId": "cfg-1"}),
    ]
    for method, params in attempts:
        out = dave.rpc(method, params)
        assert out.get("error", {}).get("code") == -32001, (method, out)
        assert out["error"]["data"]["reason"] == "task-foreign", (method, out)
    for verb, path in [("POST", f"/tasks/{task}:cancel"), ("GET", f"/tasks/{task}:subscribe"),
                       ("GET", f"/tasks/{task}/pushNotificationConfigs"),
                       ("POST", f"/v1/tasks/{task}/pushNotificationConfigs"),
                       ("DELETE", f"/tasks/{task}/pushNotificationConfigs/cfg-1")]:
        body = ({"url": hook} if path.endswith("Configs") else {}) if verb == "POST" else None
        r = dave.http.request(verb, envoy.url(path), json=body, headers={"A2A-Version": "1.0"})
        assert r.status_code == 404 and r.json()["error"]["status"] == "NOT_FOUND", (verb, path, r.status_code, r.text)
    assert received.entries("request") == []
    # His own task is his to cancel: the request reaches the agent (which may answer that it is already done).
    own = new_task(dave)
    received.clear()
    dave.rpc("CancelTask", {"id": own})
    assert len(received.entries("request")) == 1


def test_task_lists_show_only_ones_own(envoy, agent_b, pki, client_cert, received):
    alice = Caller(envoy, pki, client_cert("alice"))
    bob = Caller(envoy, pki, client_cert("bob"))
    mine, theirs = new_task(alice), new_task(bob)
    listed = alice.rpc("ListTasks", {})["result"]
    ids = {t["id"] for t in listed["tasks"]}
    assert mine in ids and theirs not in ids
    r = alice.http.get(envoy.url("/tasks"), headers={"A2A-Version": "1.0"})
    assert r.status_code == 200, r.text
    ids = {t["id"] for t in r.json()["tasks"]}
    assert mine in ids and theirs not in ids
    # The agent itself lists both: the filtering is Grantwall's.
    direct = httpx.post(f"http://127.0.0.1:{agent_b.port}/", headers={"A2A-Version": "1.0"}, trust_env=False,
                        json={"jsonrpc": "2.0", "id": 1, "method": "ListTasks", "params": {}}).json()
    assert {mine, theirs} <= {t["id"] for t in direct["result"]["tasks"]}
    assert bob.rpc("ListTasks", {})["error"]["code"] == 403


def test_stream_created_task_is_bound(envoy, pki, client_cert, received):
    alice = Caller(envoy, pki, client_cert("alice"))
    body = {"jsonrpc": "2.0", "id": 5, "method": "SendStreamingMessage",
            "params": {"message": {"role": "ROLE_USER", "messageId": "s1", "parts": [{"text": "s"}]}}}
    with alice.http.stream("POST", envoy.url("/"), json=body, headers={"A2A-Version": "1.0"}) as r:
        data = [json.loads(line[5:]) for line in r.iter_lines() if line.startswith("data:")]
    task = data[0]["result"]["task"]["id"]
    assert alice.rpc("GetTask", {"id": task})["result"]["id"] == task
    bob = Caller(envoy, pki, client_cert("bob"))
    assert bob.rpc("GetTask", {"id": task})["error"]["code"] == -32001


def test_push_urls_must_be_allowlisted(envoy, pki, client_cert, received):
    alice = Caller(envoy, pki, client_cert("alice"))
    task = new_task(alice)
    received.clear()
    out = alice.rpc("CreateTaskPushNotificationConfig", {"taskId": task, "url": "http://169.254.169.254/latest/"})
    assert out["error"]["data"]["reason"] == "push-url-refused"
    r = alice.http.post(envoy.url(f"/tasks/{task}/pushNotificationConfigs"), json={"url": "https://evil.example/"})
    assert r.status_code == 403
    assert received.entries("request") == []
    out = alice.rpc("CreateTaskPushNotificationConfig", {"taskId": task, "url": "https://hooks.example.com/a2a/cb"})
    assert len(received.entries("request")) == 1  # allowed through (the agent itself has push disabled)


def test_card_is_filtered_per_caller(envoy, pki, client_cert, received):
    alice = Caller(envoy, pki, client_cert("alice"))
    bob = Caller(envoy, pki, client_cert("bob"))
    carol = Caller(envoy, pki, client_cert("carol"))
    for path in ["/.well-known/agent-card.json", "/.well-known/agent.json"]:
        r = alice.http.get(envoy.url(path))
        card = r.json()
        assert "etag" not in r.headers and r.headers["cache-control"] == "private, no-store"
        assert [s["id"] for s in card["skills"]] == ["echo"]
        assert {i["url"] for i in card["supportedInterfaces"]} == {"https://gateway.example/agents/b/"}
        assert [s["id"] for s in bob.http.get(envoy.url(path)).json()["skills"]] == ["echo", "admin-reset"]
        assert carol.http.get(envoy.url(path)).status_code == 403
    # The SDK's resolver reads the filtered card as a valid AgentCard.
    from a2a.client import A2ACardResolver

    async def resolve():
        async with httpx.AsyncClient(verify=ssl_context(pki.ca_cert, client_cert("alice")), trust_env=False) as http:
            return await A2ACardResolver(http, envoy.url("")).get_agent_card()
    resolved = asyncio.run(resolve())
    assert [s.id for s in resolved.skills] == ["echo"]


def test_signed_cards_are_never_emitted_altered(start_envoy, compile_policy, agent_b, e2e_dir, pki, client_cert):
    if not agent_b.compat:
        pytest.skip("one run is enough: card handling does not depend on the 0.3 layer")
    signed_agent = start_a2a_server(e2e_dir / "a2a-b-signed", signed=True)
    try:
        envoy = start_envoy(compile_policy(POLICY), upstream=signed_agent, replace=False)
        alice = Caller(envoy, pki, client_cert("alice"))
        r = alice.http.get(envoy.url("/.well-known/agent-card.json"))
        body = r.json()
        # Filtering would drop a skill and rewrite the URL, which breaks the signature: refused, not altered.
        assert "skills" not in body and body["error"]["details"][0]["reason"] == "card-signed-refused", body
        envoy.wait_access_log(lambda e: e.get("path") == "/.well-known/agent-card.json")
        reasons = [a.get("reason") for a in envoy.audits() if a]
        assert "card-signed-refused" in reasons
    finally:
        signed_agent.stop()


def test_unrecognised_requests_and_grpc_are_refused(envoy, pki, client_cert, received):
    alice = Caller(envoy, pki, client_cert("alice"))
    for method, path in [("GET", "/admin"), ("POST", "/message%3Asend"), ("GET", "/tasks/x/"), ("PUT", "/tasks/x")]:
        r = alice.http.request(method, envoy.url(path), content=b"{}" if method != "GET" else None,
                               headers={"content-type": "application/json"})
        assert r.status_code in (403, 404), (method, path, r.status_code)
    r = alice.http.post(envoy.url("/lf.a2a.v1.A2AService/SendMessage"), content=b"\x00\x00\x00\x00\x00",
                        headers={"content-type": "application/grpc"})
    # Envoy turns a local reply to a gRPC request into a gRPC status (HTTP 200 + grpc-status).
    assert r.status_code == 415 or r.headers.get("grpc-status") not in (None, "0"), r.headers
    assert received.entries("request") == []


@pytest.mark.parametrize("caller,method,outcome", [
    ("alice", "SendMessage", "allow"),
    ("bob", "SendStreamingMessage", "deny"),      # bob may send, not stream
    ("carol", "message/send", "deny"),            # no grant; a 0.3 name
])
def test_explain_gives_the_filters_own_a2a_record(envoy, pki, client_cert, compiler_path, tmp_path, received,
                                                  caller, method, outcome):
    from .test_identity import audits
    me = Caller(envoy, pki, client_cert(caller))
    params = {"message": {"messageId": f"m-explain-{caller}", "role": "ROLE_USER", "parts": [{"text": "x"}]}}
    if "/" in method:
        params = {"message": {"kind": "message", "messageId": f"m-explain-{caller}", "role": "user",
                              "parts": [{"kind": "text", "text": "x"}]}}
    # Only this call's record: earlier tests' lines are flushed (every 100 ms) before the log is cut.
    time.sleep(0.25)
    envoy.clear_access_log()
    out = me.rpc(method, params, id_=f"explain-{caller}")
    assert ("error" in out) == (outcome == "deny"), out
    [seen] = audits(envoy, lambda a: a.get("identity", "").endswith(f"/sa/{caller}"))
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    done = subprocess.run([str(compiler_path), "explain", "-f", str(policy), "--backend", "agents/agent-b",
                           "--sa", f"agents/{caller}", "--a2a", method, "--json"], capture_output=True, text=True, timeout=30)
    assert done.returncode == (0 if outcome == "allow" else 3), done.stderr
    predicted = json.loads(done.stdout)
    # The binding of a 0.3 call is a2a-0.3/jsonrpc in the filter's record; explain assumes 1.0.
    if "/" in method:
        seen["detail"] = "a2a/jsonrpc"
    assert predicted == seen
