"""CEL rules in real Envoy: KAN's own e2e CEL policies, every native variable valid and invalid, and
Grantwall's argument constraints (examples/policies/argument-constraints.yaml), with the real MCP SDK.

KAN's CEL manifests (policies/kan-cel/, verbatim upstream copies) are compiled with their namespace and
XBackend renamed to the harness's; their tester identity is then spiffe://cluster.local/ns/tools/sa/e2e-tester-sa.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mcp.shared.exceptions import MCPError

from .clients import LEGACY, RawSession, mcp_client, text_of

pytestmark = pytest.mark.anyio

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
KAN_CEL = HERE / "policies" / "kan-cel"
EXAMPLES = REPO / "examples" / "policies"
FORBIDDEN = {"code": 403, "message": "Access to this tool is forbidden.", "data": {"reason": "default-deny"}}

BACKEND = """
apiVersion: agentic.networking.x-k8s.io/v0alpha0
kind: XBackend
metadata: {name: mcp-server, namespace: tools}
spec:
  mcp: {serviceName: mcp-server, port: 8000}
---
"""


def kan_policy(name: str) -> str:
    """An upstream CEL manifest, moved onto the harness's backend (KAN's e2e renames the namespace too)."""
    text = (KAN_CEL / name).read_text()
    return BACKEND + text.replace("e2e-test-ns", "tools").replace("e2e-mcp-backend", "mcp-server")


def audits(envoy, predicate, count: int = 1) -> list[dict]:
    def audit(entry: dict) -> dict | None:
        raw = entry.get("grantwall")
        return json.loads(raw) if isinstance(raw, str) and raw not in ("", "-") else None

    entries = envoy.wait_access_log(lambda e: (a := audit(e)) is not None and predicate(a), count=count)
    return [audit(e) for e in entries]


async def call(mcp, tool: str, arguments: dict) -> str:
    """The tool's text, or "denied" when Grantwall refused it (KAN's JSON-RPC 403, HTTP 200)."""
    try:
        return text_of(await mcp.call_tool(tool, arguments))
    except MCPError as err:
        assert (err.code, err.message) == (403, FORBIDDEN["message"]), err
        return "denied"


@pytest.fixture
def tester(client_cert):
    return client_cert("e2e-tester-sa", namespace="tools")


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_kan_cel_policy_allows_only_get_sum(start_envoy, compile_policy, pki, tester, upstream_log, mode):
    # KAN e2e case 6: "request.mcp.tool_name == 'get-sum'" plus an allow-base-mcp rule for the session.
    envoy = start_envoy(compile_policy(kan_policy("cel-policy.yaml")))
    async with mcp_client(envoy.url(), ca=pki.ca_cert, cert=tester, mode=mode) as mcp:
        assert await call(mcp, "get-sum", {"a": 2, "b": 3}) == "The sum of 2 and 3 is 5."
        assert await call(mcp, "echo", {"message": "hello"}) == "denied"
        assert await call(mcp, "delete-everything", {}) == "denied"
        # The session survives the denials.
        assert await call(mcp, "get-sum", {"a": 1, "b": 1}) == "The sum of 1 and 1 is 2."
    assert upstream_log.tools_executed() == ["get-sum", "get-sum"]
    assert set(upstream_log.tool_calls_received()) == {"get-sum"}
    allowed = audits(envoy, lambda a: a.get("target") == "get-sum", count=2)
    assert {(a["decision"], a["rule"]) for a in allowed} == {("allow", "allow-get-sum-only")}


async def test_kan_cel_all_failures_and_multi_rule(start_envoy, compile_policy, pki, tester, upstream_log):
    # Case 7: the only CEL rule names a tool that does not exist: nothing is callable (sessions still open).
    envoy = start_envoy(compile_policy(kan_policy("cel-all-failures.yaml")))
    async with mcp_client(envoy.url(), ca=pki.ca_cert, cert=tester, mode="legacy") as mcp:
        # Lists are filtered per caller (docs/lists-and-side-channels.md): nothing callable, nothing listed.
        assert (await mcp.list_tools()).tools == []
        assert await call(mcp, "get-sum", {"a": 2, "b": 3}) == "denied"
        assert await call(mcp, "echo", {"message": "hello"}) == "denied"
    assert upstream_log.tool_calls_received() == []
    # Case 8: two CEL rules are ORed: get-sum passes, echo does not.
    envoy = start_envoy(compile_policy(kan_policy("cel-multi-rule.yaml")))
    async with mcp_client(envoy.url(), ca=pki.ca_cert, cert=tester, mode="legacy") as mcp:
        assert await call(mcp, "get-sum", {"a": 2, "b": 3}) == "The sum of 2 and 3 is 5."
        assert await call(mcp, "echo", {"message": "hello"}) == "denied"
    assert upstream_log.tools_executed() == ["get-sum"]


async def test_kan_cel_macros(start_envoy, compile_policy, pki, tester, upstream_log):
    # path.startsWith('/mc') && headers['mcp-protocol-version'].contains('2025') && tool_name.matches('^get-[a-z]+$')
    envoy = start_envoy(compile_policy(kan_policy("cel-macros.yaml")))
    async with mcp_client(envoy.url(), ca=pki.ca_cert, cert=tester, mode="legacy") as mcp:
        assert mcp.protocol_version == LEGACY          # the SDK sends MCP-Protocol-Version: 2025-11-25
        assert await call(mcp, "get-sum", {"a": 2, "b": 3}) == "The sum of 2 and 3 is 5."
        assert await call(mcp, "get-tiny-image", {}) == "denied"      # '-' after 'tiny' is not [a-z]
        assert await call(mcp, "echo", {"message": "hello"}) == "denied"
    # The 2026-07-28 revision's header does not contain '2025': the same call is refused.
    async with mcp_client(envoy.url(), ca=pki.ca_cert, cert=tester, mode="auto") as mcp:
        assert await call(mcp, "get-sum", {"a": 2, "b": 3}) == "denied"
    assert upstream_log.tools_executed() == ["get-sum"]


# --- every native variable, valid and invalid, in one Envoy -----------------------------------------

# (name, expression that holds for the harness's requests, expression that does not)
VARIABLES = [
    ("path", "request.path.startsWith('/mcp')", "request.path == '/other'"),
    ("url-path", "request.url_path == '/mcp'", "request.url_path.endsWith('/x')"),
    ("method", "request.method == 'POST'", "request.method == 'GET'"),
    ("host", "request.host.startsWith('127.0.0.1') || request.host.startsWith('localhost')",
     "request.host == 'evil.example'"),
    ("headers", "request.headers['mcp-protocol-version'] == '2025-11-25'", "request.headers['x-missing'] == 'x'"),
    ("time", "request.time.getFullYear() >= 2025 && request.time < timestamp('2100-01-01T00:00:00Z')",
     "request.time.getFullYear() < 2000"),
    ("tool", "request.mcp.tool_name.matches('^get-')", "request.mcp.tool_name.endsWith('-image')"),
    ("mcp-method", "request.mcp.method == 'tools/call'", "request.mcp.method == 'prompts/get'"),
    ("spiffe", "source.spiffe_id.endsWith('/sa/var-spiffe-ok')", "source.spiffe_id.endsWith('/sa/nobody')"),
    ("sa", "source.namespace == 'agents' && source.service_account.startsWith('var-sa')",
     "source.namespace == 'kube-system'"),
    ("jwt", "!has(jwt.claims.sub)", "jwt.claims.sub == 'alice'"),
]


def variables_policy() -> str:
    rules = []
    for name, good, bad in VARIABLES:
        for suffix, expression in (("ok", good), ("no", bad)):
            sa = f"var-{name}-{suffix}"
            rules.append(f"""  - name: {sa}
    source: {{type: ServiceAccount, serviceAccount: {{name: {sa}, namespace: agents}}}}
    authorization: {{type: CEL, cel: {{expression: {json.dumps(expression)}}}}}
  - name: {sa}-base
    source: {{type: ServiceAccount, serviceAccount: {{name: {sa}, namespace: agents}}}}
    authorization: {{type: Inline, mcp: {{mcpBaseProtocolMethodsOption: MATCH_BASE_PROTOCOL_METHODS}}}}
""")
    # KAN accepts at most 5 policies per target: spread the rules over a few policies.
    docs, per = [], 5  # five (CEL, base) pairs: the CRD allows 10 rules per policy
    for i in range(0, len(rules), per):
        docs.append(f"""apiVersion: agentic.networking.x-k8s.io/v1alpha1
kind: XAccessPolicy
metadata: {{name: variables-{i // per}, namespace: tools}}
spec:
  targetRefs: [{{group: agentic.networking.x-k8s.io, kind: XBackend, name: mcp-server}}]
  action: Allow
  rules:
{''.join(rules[i:i + per])}""")
    return BACKEND + "---\n".join(docs)


async def test_each_native_variable_valid_and_invalid(start_envoy, compile_policy, pki, client_cert, upstream_log):
    envoy = start_envoy(compile_policy(variables_policy()))
    outcomes = {}
    for name, _, _ in VARIABLES:
        for suffix in ("ok", "no"):
            sa = f"var-{name}-{suffix}"
            with RawSession(envoy.url(), ca=pki.ca_cert, cert=client_cert(sa)) as s:
                s.initialize()
                reply = s.call_tool("get-sum", {"a": 1, "b": 2})
            outcomes[sa] = "allow" if "result" in reply else reply["error"]
    expected = {f"var-{n}-ok": "allow" for n, _, _ in VARIABLES} | {f"var-{n}-no": FORBIDDEN for n, _, _ in VARIABLES}
    assert outcomes == expected
    # A failed evaluation says which rule failed and why (a missing header is "no such key", not "false").
    missing = audits(envoy, lambda a: a.get("identity", "").endswith("/sa/var-headers-no")
                     and a.get("mcpMethod") == "tools/call")[0]
    assert missing["decision"] == "deny"
    assert missing["detail"] == "CEL rule tools/variables-1/var-headers-no: no such key"
    assert len(upstream_log.tools_executed()) == len(VARIABLES)


# --- argument constraints: the example policy, compiled with the other example files -----------------

async def test_argument_constraints_example(start_envoy, compile_policy, pki, client_cert, upstream_log):
    config = compile_policy(EXAMPLES)
    envoy = start_envoy(config)
    carol = client_cert("carol")
    async with mcp_client(envoy.url(), ca=pki.ca_cert, cert=carol) as mcp:
        # Her tools are listed (some arguments pass); each call is then judged by its real arguments.
        assert {t.name for t in (await mcp.list_tools()).tools} == {"get-sum", "echo"}
        assert await call(mcp, "get-sum", {"a": 2, "b": 3}) == "The sum of 2 and 3 is 5."
        assert await call(mcp, "get-sum", {"a": 500, "b": 3}) == "denied"
        assert await call(mcp, "get-sum", {"a": 99, "b": 0}) == "The sum of 99 and 0 is 99."
        assert await call(mcp, "get-sum", {"a": "5", "b": 3}) == "denied"       # a string is not a number
        assert await call(mcp, "echo", {"message": "hello there"}) == "hello there"
        assert await call(mcp, "echo", {"message": "goodbye"}) == "denied"
        assert await call(mcp, "delete-everything", {}) == "denied"
    assert upstream_log.tools_executed() == ["get-sum", "get-sum", "echo"]
    assert "delete-everything" not in upstream_log.tool_calls_received()
    # The example file does not change what alice and bob may do (agent-tools.yaml).
    async with mcp_client(envoy.url(), ca=pki.ca_cert, cert=client_cert("bob")) as mcp:
        assert await call(mcp, "echo", {"message": "goodbye"}) == "goodbye"
        assert await call(mcp, "get-sum", {"a": 1, "b": 1}) == "denied"


async def test_argument_errors_deny_and_are_explained(start_envoy, compile_policy, pki, client_cert, upstream_log):
    envoy = start_envoy(compile_policy(EXAMPLES))
    with RawSession(envoy.url(), ca=pki.ca_cert, cert=client_cert("carol")) as s:
        s.initialize()
        assert s.call_tool("get-sum", {"b": 3})["error"] == FORBIDDEN                 # no `a`
        no_args = s.request("tools/call", {"name": "get-sum"}).message()               # no arguments at all
        assert no_args["error"] == FORBIDDEN
        # The strict parser still refuses a duplicated argument before any rule runs.
        dup = s.post(b'{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"echo",'
                     b'"arguments":{"message":"hello","message":"rm -rf /"}}}')
        assert dup.status == 400 and dup.message()["error"]["data"] == {"reason": "duplicate-key"}
    assert upstream_log.tool_calls_received() == []
    denied = audits(envoy, lambda a: a.get("mcpMethod") == "tools/call" and a["decision"] == "deny", count=2)
    assert denied[0]["detail"] == "CEL rule tools/argument-constraints/carol-small-sums: no such key"
    assert denied[1]["detail"] == ("CEL rule tools/argument-constraints/carol-small-sums: "
                                   "request.mcp.arguments is absent for this request")
