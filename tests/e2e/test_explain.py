"""`grantwall explain --json` agrees with the filter in Envoy, record for record.

Each case is sent through Envoy (grants.yaml, the policy of test_grants.py) and the filter's audit record is read
from the access log; `dist/grantwall explain` is run on the same facts; the two records must be identical, field
for field (decision, reason, level, policy, rule, identity, backend, MCP method, target, detail).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from .clients import ACCEPT, RawSession, post_jsonrpc, raw_request
from .envoy import CLUSTER

POLICY = Path(__file__).with_name("policies") / "grants.yaml"
# The example policies: CEL rules with argument constraints (carol), judged on each call's real arguments.
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policies"


def rpc(method: str, params: dict | None = None, *, notification: bool = False) -> bytes:
    msg: dict = {"jsonrpc": "2.0", "method": method, "params": params or {}}
    if not notification:
        msg["id"] = 1
    return json.dumps(msg).encode()


# (id, caller or None, HTTP method, path, body or None, extra headers, explain flags)
CASES = [
    ("alice initialize", "alice", "POST", "/mcp", rpc("initialize"), {}, ["--mcp", "initialize"]),
    ("alice calls get-sum", "alice", "POST", "/mcp", rpc("tools/call", {"name": "get-sum"}), {},
     ["--mcp", "tools/call", "--tool", "get-sum"]),
    ("alice calls delete-everything", "alice", "POST", "/mcp", rpc("tools/call", {"name": "delete-everything"}), {},
     ["--mcp", "tools/call", "--tool", "delete-everything"]),
    ("bob calls echo", "bob", "POST", "/mcp", rpc("tools/call", {"name": "echo", "arguments": {"message": "m"}}), {},
     ["--mcp", "tools/call", "--tool", "echo", "--args", '{"message": "m"}']),
    ("bob calls get-sum", "bob", "POST", "/mcp", rpc("tools/call", {"name": "get-sum"}), {},
     ["--mcp", "tools/call", "--tool", "get-sum"]),
    ("anonymous initialize", None, "POST", "/mcp", rpc("initialize"), {}, ["--mcp", "initialize"]),
    ("mallory lists tools", "mallory", "POST", "/mcp", rpc("tools/list"), {}, ["--mcp", "tools/list"]),
    ("alice reads the readme", "alice", "POST", "/mcp", rpc("resources/read", {"uri": "mem://docs/readme"}), {},
     ["--mcp", "resources/read", "--uri", "mem://docs/readme"]),
    ("alice reads the keys", "alice", "POST", "/mcp", rpc("resources/read", {"uri": "mem://secret/keys"}), {},
     ["--mcp", "resources/read", "--uri", "mem://secret/keys"]),
    ("alice gets a prompt", "alice", "POST", "/mcp", rpc("prompts/get", {"name": "greeting"}), {},
     ["--mcp", "prompts/get", "--prompt", "greeting"]),
    ("bob gets a prompt", "bob", "POST", "/mcp", rpc("prompts/get", {"name": "greeting"}), {},
     ["--mcp", "prompts/get", "--prompt", "greeting"]),
    ("bob notifies", "bob", "POST", "/mcp", rpc("notifications/initialized", notification=True), {},
     ["--mcp", "notifications/initialized"]),
    ("duplicate argument key", "alice", "POST", "/mcp",
     b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"a":1,"a":2}}}', {},
     ["--mcp", "tools/call", "--tool", "echo", "--args", '{"a":1,"a":2}']),
    ("tools/call without a name", "alice", "POST", "/mcp", rpc("tools/call"), {}, ["--mcp", "tools/call"]),
    ("routing header disagrees", "alice", "POST", "/mcp", rpc("tools/call", {"name": "echo"}),
     {"mcp-method": "tools/list"}, ["--mcp", "tools/call", "--tool", "echo", "-H", "Mcp-Method: tools/list"]),
    ("alice opens the stream", "alice", "GET", "/mcp", None, {}, ["--method", "GET"]),
    ("mallory opens the stream", "mallory", "GET", "/mcp", None, {}, ["--method", "GET"]),
    # A real session of alice's: the filter refuses ids it never saw initialized (session binding), a runtime
    # fact explain cannot know, so the case uses a session alice did open through Envoy.
    ("alice ends a session", "alice", "DELETE", "/mcp", None, {"mcp-session-id": "s1"},
     ["--method", "DELETE", "-H", "Mcp-Session-Id: s1"]),
    ("alice off the MCP path", "alice", "GET", "/metrics", None, {}, ["--method", "GET", "--path", "/metrics"]),
    ("bob posts text off the MCP path", "bob", "POST", "/upload", b"plain text", {"content-type": "text/plain"},
     ["--path", "/upload", "-H", "Content-Type: text/plain"]),
]


@pytest.fixture(scope="module")
def envoy(start_envoy, compile_policy):
    return start_envoy(compile_policy(POLICY))


def through_envoy(envoy, pki, client_cert, caller, method, path, body, headers) -> dict:
    cert = client_cert(caller) if caller else None
    if "mcp-session-id" in headers:
        with RawSession(envoy.url(), ca=pki.ca_cert, cert=cert) as s:
            s.initialize()
            headers = {**headers, "mcp-session-id": s.session_id}
    envoy.clear_access_log()
    if method == "POST" and "content-type" not in headers:
        post_jsonrpc(envoy.url(path), body, headers, cert, ca=pki.ca_cert, timeout=5)
    else:
        hdrs = {"accept": ACCEPT, **headers}
        raw_request(method, envoy.url(path), ca=pki.ca_cert, cert=cert, body=body, headers=hdrs, timeout=5)
    entries = envoy.wait_access_log(lambda e: e.get("grantwall") not in (None, "", "-"))
    assert len(entries) == 1, entries
    return json.loads(entries[0]["grantwall"])


def explain(compiler_path, caller, flags, policy: Path = POLICY) -> tuple[int, dict]:
    who = ["--sa", f"agents/{caller}"] if caller else []
    done = subprocess.run([str(compiler_path), "explain", "-f", str(policy), "--cluster", CLUSTER, *who, *flags,
                           "--json"], capture_output=True, text=True, timeout=30)
    assert done.returncode in (0, 3), done.stderr
    return done.returncode, json.loads(done.stdout)


@pytest.mark.parametrize("name, caller, method, path, body, headers, flags", CASES, ids=[c[0] for c in CASES])
def test_explain_gives_the_filters_own_record(envoy, pki, client_cert, compiler_path, name, caller, method, path,
                                              body, headers, flags):
    seen = through_envoy(envoy, pki, client_cert, caller, method, path, body, headers)
    code, predicted = explain(compiler_path, caller, flags)
    assert predicted == seen
    assert code == (0 if seen["decision"] == "allow" else 3)


def test_the_cases_cover_every_outcome(compiler_path):
    """A table that only ever allowed, or only parsed cleanly, would prove little: every outcome is in it."""
    records = [explain(compiler_path, c[1], c[6])[1] for c in CASES]
    assert {r["reason"] for r in records} == {"rule-matched", "default-deny", "duplicate-key", "invalid-params",
                                              "header-mismatch"}
    assert {(r["mcpMethod"] is None, r["decision"]) for r in records} >= {(False, "allow"), (False, "deny"),
                                                                          (True, "deny")}


def call(tool: str, arguments: dict | None) -> tuple[bytes, list[str]]:
    params: dict = {"name": tool}
    flags = ["--mcp", "tools/call", "--tool", tool]
    if arguments is not None:
        params["arguments"] = arguments
        flags += ["--args", json.dumps(arguments)]
    return rpc("tools/call", params), flags


# (id, caller, tool, arguments): CEL argument constraints, each outcome a CEL rule can give.
CEL_CASES = [
    ("carol sums small numbers", "carol", "get-sum", {"a": 2, "b": 3}),
    ("carol sums a large number", "carol", "get-sum", {"a": 500, "b": 3}),
    ("carol sums a string", "carol", "get-sum", {"a": "5", "b": 3}),
    ("carol leaves out a", "carol", "get-sum", {"b": 3}),
    ("carol sends no arguments", "carol", "get-sum", None),
    ("carol echoes hello", "carol", "echo", {"message": "hello there"}),
    ("carol echoes goodbye", "carol", "echo", {"message": "goodbye"}),
    ("bob echoes goodbye", "bob", "echo", {"message": "goodbye"}),
]


@pytest.fixture(scope="module")
def examples_envoy(start_envoy, compile_policy):
    return start_envoy(compile_policy(EXAMPLES), replace=False)


@pytest.mark.parametrize("name, caller, tool, arguments", CEL_CASES, ids=[c[0] for c in CEL_CASES])
def test_explain_agrees_on_cel_argument_constraints(examples_envoy, pki, client_cert, compiler_path, name, caller,
                                                     tool, arguments):
    body, flags = call(tool, arguments)
    seen = through_envoy(examples_envoy, pki, client_cert, caller, "POST", "/mcp", body, {})
    code, predicted = explain(compiler_path, caller, flags, EXAMPLES)
    assert predicted == seen
    assert code == (0 if seen["decision"] == "allow" else 3)


def test_the_cel_cases_allow_and_deny_for_each_reason(compiler_path):
    records = [explain(compiler_path, c[1], call(c[2], c[3])[1], EXAMPLES)[1] for c in CEL_CASES]
    assert {r["decision"] for r in records} == {"allow", "deny"}
    details = {r.get("detail") or "" for r in records if r["decision"] == "deny"}
    assert any("no such key" in d for d in details) and any("absent" in d for d in details), details
