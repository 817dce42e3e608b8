"""Grantwall in six steps: KAN policy -> compiled config -> Envoy + filter -> real MCP agents -> an A2A hop.

    make demo            # = make build venv && .venv/bin/python examples/demo/run_demo.py

What it shows, with nothing mocked:
  1. `dist/grantwall compile` turns the CRDs in examples/policies/ into the filter's config.
  2. A real Envoy 1.40 (examples/envoy.yaml) loads dist/grantwall.wasm with that config, in
     front of a real MCP server; agents authenticate with mTLS client certificates that carry
     their SPIFFE IDs.
  3. Agents use the official MCP Python SDK: allowed calls work, denied calls come back as a
     clean JSON-RPC error and the session goes on; a caller without identity gets nowhere.
  4. The evidence: Envoy's audit records, the MCP server's own log of what it executed, and
     the decision counters in Envoy's Prometheus stats.
  5. An A2A hop (examples/a2a/agents.yaml): agent A messages agent B (a real a2a-sdk server) with the
     a2a-sdk client through a second Envoy; agent C is refused before B sees anything; A's card shows
     only the skill it is granted.
  6. Every expectation is checked: exit status 0 only if everything behaved as described, so
     `make demo` doubles as a smoke test.

It reuses the e2e harness (tests/e2e/) so that the demo and the tests run the very same setup.
Everything runs in a temporary directory and every process it starts is stopped on exit.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable

REPO_ROOT = Path(__file__).resolve().parents[2]
# The harness is the package `e2e` under tests/ (imported that way so that its envoy.py never
# shadows the `envoy` wheel).
sys.path.insert(0, str(REPO_ROOT / "tests"))

from mcp.shared.exceptions import MCPError  # noqa: E402

from e2e.clients import mcp_client, text_of  # noqa: E402
from e2e.envoy import CLUSTER, Envoy, render_bootstrap, start_envoy  # noqa: E402
from e2e.pki import Pki, spiffe_sa  # noqa: E402
from e2e.upstream import UpstreamServer, start_mcp_server  # noqa: E402
from e2e.a2a_upstream import start_a2a_server  # noqa: E402
from e2e.clients import ssl_context  # noqa: E402

POLICIES = REPO_ROOT / "examples" / "policies"
A2A_POLICY = REPO_ROOT / "examples" / "a2a" / "agents.yaml"
WASM = REPO_ROOT / "dist" / "grantwall.wasm"
COMPILER = REPO_ROOT / "dist" / "grantwall"
FORBIDDEN = "Access to this tool is forbidden."

ALICE = spiffe_sa("alice")
BOB = spiffe_sa("bob")
CAROL = spiffe_sa("carol")

# --- output --------------------------------------------------------------------------------

_TTY = sys.stdout.isatty() and os.environ.get("NO_COLOR") is None


def _paint(code: str, text: str) -> str:
    """ANSI colour only on a terminal, so logs and CI output stay plain text."""
    return f"\033[{code}m{text}\033[0m" if _TTY else text


def bold(text: str) -> str:
    return _paint("1", text)


def green(text: str) -> str:
    return _paint("32", text)


def red(text: str) -> str:
    return _paint("31", text)


def dim(text: str) -> str:
    return _paint("2", text)


def step(number: int, title: str) -> None:
    print()
    print(bold(f"== {number}. {title} " + "=" * max(0, 70 - len(title))))


def table(headers: list[str], rows: list[list[str]], paint: Callable[[list[str], str], str] | None = None) -> None:
    """A plain-text table; `paint(row, cell_text)` may colour a padded cell (TTY only)."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = lambda cells: "  " + " | ".join(c.ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    print(bold(line(headers).rstrip()))
    print("  " + "-+-".join("-" * w for w in widths))
    for row in rows:
        text = line(row).rstrip()
        print(paint(row, text) if paint else text)


def rel(path: Path) -> str:
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


# --- the checks ----------------------------------------------------------------------------

class Checks:
    """Expectations collected along the way; the exit status is whether all of them held."""

    def __init__(self) -> None:
        self.failed: list[str] = []
        self.count = 0

    def expect(self, ok: bool, what: str, detail: str = "") -> bool:
        self.count += 1
        if not ok:
            self.failed.append(what + (f": {detail}" if detail else ""))
        return ok


# --- step 1: compile -------------------------------------------------------------------------

def compile_policies() -> str:
    """Run the real compiler on examples/policies/ and summarise what the filter will enforce."""
    cmd = [rel(COMPILER), "compile", "-f", rel(POLICIES) + "/", "--pretty"]
    print(f"  Policies: {', '.join(p.name for p in sorted(POLICIES.glob('*.yaml')))} in {rel(POLICIES)}/")
    print(f"  $ {' '.join(cmd)}")
    done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise SystemExit(red(f"  grantwall compile failed ({done.returncode}):\n{done.stderr}"))
    for warning in done.stderr.splitlines():
        print(f"  {warning}")
    config = json.loads(done.stdout)
    print(f"  -> {len(done.stdout)} bytes of JSON (the filter's `configuration`). In short:")
    print(f"     principals: {', '.join(config['principals'])}")
    for backend in config["backends"]:
        rules = [r for p in backend["policies"] for r in p["rules"]]
        print(f"     backend {backend['name']} (paths {', '.join(backend['paths'])}): "
              f"{plural(len(backend['policies']), 'policy', 'policies')}, {plural(len(rules), 'rule', 'rules')}")
        for policy in backend["policies"]:
            for rule in policy["rules"]:
                who = ", ".join(config["principals"][i].rsplit("/", 1)[-1] for i in rule["principals"])
                mcp = rule.get("mcp") or {}
                methods = mcp.get("methods") or ([{"method": "tools/call"}] if rule.get("cel") else [])
                grants = "; ".join(f"{m['method']} {m.get('names', '*')}" for m in methods) or "(base protocol only)"
                if rule.get("cel"):
                    grants += " when its CEL expression holds"
                base = " + base protocol" if mcp.get("baseProtocol") else ""
                print(f"       {policy['name']}/{rule['name']}: {who} -> {grants}{base}")
    clusters = ", ".join(config["routes"]["clusters"])
    print(f"     Envoy cluster -> backend: {clusters}")
    print(f"     denied MCP calls are answered as: {config['settings']['denial']}")
    return done.stdout


# --- step 2: start -------------------------------------------------------------------------

@dataclass
class Stack:
    pki: Pki
    upstream: UpstreamServer
    envoy: Envoy


def start_stack(workdir: Path, plugin_config: str, started: list[Any]) -> Stack:
    """PKI, upstream MCP server and Envoy; each process is added to `started` as soon as it runs."""
    pki = Pki.create(workdir / "pki")
    print(f"  Test PKI (CA, Envoy's server cert, agents' SPIFFE client certs): {workdir / 'pki'}")
    upstream = start_mcp_server(workdir / "upstream")
    started.append(upstream)
    print(f"  MCP server (Python mcp SDK, tools get-sum, echo, delete-everything, ...): {upstream.url}")
    boot = render_bootstrap(ca_cert=pki.ca_cert, server_cert=pki.server_cert, server_key=pki.server_key,
                            upstream_port=upstream.port, access_log=workdir / "envoy" / "access.log",
                            plugin_config=plugin_config, wasm_path=WASM)
    envoy = start_envoy(workdir / "envoy", boot)
    started.append(envoy)
    print(f"  Envoy 1.40 + {rel(WASM)} (examples/envoy.yaml, mTLS): {envoy.url()}")
    print(f"     routes to cluster {CLUSTER}")
    print(f"     admin API (stats): {envoy.admin}")
    return Stack(pki, upstream, envoy)


# --- step 3: agents --------------------------------------------------------------------------

@dataclass
class Outcome:
    agent: str
    call: str
    expected: str  # "allow" | "deny"
    decision: str  # what happened: "allow" | "deny" | "error"
    seen: str      # what the client saw


async def attempt(agent: str, call: str, expected: str, action: Callable[[], Awaitable[str]]) -> Outcome:
    """Run one client action; a 403 MCPError is a denial, any other exception an error."""
    try:
        return Outcome(agent, call, expected, "allow", await action())
    except Exception as raised:  # noqa: BLE001 - shown in the table and failed by the checks
        err = mcp_error_in(raised)
        decision = "deny" if err is not None and err.code == 403 else "error"
        return Outcome(agent, call, expected, decision, describe(raised))


def describe(exc: BaseException) -> str:
    """What the client saw: the JSON-RPC error if there is one, else the exception."""
    err = mcp_error_in(exc)
    return f"MCPError {err.code}: {err.message}" if err is not None else f"{type(exc).__name__}: {exc}"


def mcp_error_in(exc: BaseException) -> MCPError | None:
    """The MCPError behind `exc`: while connecting, the SDK raises it inside an ExceptionGroup."""
    if isinstance(exc, MCPError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            if (found := mcp_error_in(inner)) is not None:
                return found
    if exc.__cause__ is not None:
        return mcp_error_in(exc.__cause__)
    return None


def shorten(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# One agent's script: (what it calls, the expected decision, the call itself on a connected client).
Call = tuple[str, str, Callable[[Any], Awaitable[str]]]


async def list_tools(mcp: Any) -> str:
    return "tools: " + ", ".join(t.name for t in (await mcp.list_tools()).tools)


def call_tool(name: str, arguments: dict) -> Callable[[Any], Awaitable[str]]:
    async def call(mcp: Any) -> str:
        return text_of(await mcp.call_tool(name, arguments))
    return call


ALICE_CALLS: list[Call] = [
    ("tools/list", "allow", list_tools),
    ("get-sum(2, 3)", "allow", call_tool("get-sum", {"a": 2, "b": 3})),
    ("delete-everything()", "deny", call_tool("delete-everything", {"confirm": True})),
    ("echo('still here') after the denial", "allow", call_tool("echo", {"message": "still here"})),
]
BOB_CALLS: list[Call] = [
    ("echo('hi from bob')", "allow", call_tool("echo", {"message": "hi from bob"})),
    ("get-sum(1, 1)", "deny", call_tool("get-sum", {"a": 1, "b": 1})),
]
# carol's grants constrain the tool arguments (examples/policies/argument-constraints.yaml, CEL).
CAROL_CALLS: list[Call] = [
    ("get-sum(2, 3)", "allow", call_tool("get-sum", {"a": 2, "b": 3})),
    ("get-sum(500, 1): a is not below 100", "deny", call_tool("get-sum", {"a": 500, "b": 1})),
    ("echo('hello, gateway')", "allow", call_tool("echo", {"message": "hello, gateway"})),
    ("echo('rm -rf /'): must start with hello", "deny", call_tool("echo", {"message": "rm -rf /"})),
]


async def agent_session(agent: str, calls: list[Call], *, url: str, ca: Path, cert: Any) -> list[Outcome]:
    """One SDK client session making `calls` in order; if it cannot connect, every call is an error."""
    out: list[Outcome] = []
    try:
        async with mcp_client(url, ca=ca, cert=cert) as mcp:
            print(f"  {agent} connected (MCP protocol {mcp.protocol_version}), making {len(calls)} calls")
            for label, expected, action in calls:
                out.append(await attempt(agent, label, expected, lambda: action(mcp)))
    except Exception as err:  # noqa: BLE001 - reported as outcomes, failed by the checks
        print(red(f"  {agent}: session failed: {describe(err)}"))
        done = {o.call for o in out}
        out += [Outcome(agent, label, expected, "error", f"session failed: {describe(err)}")
                for label, expected, _ in calls if label not in done]
    return out


async def run_agents(stack: Stack) -> list[Outcome]:
    """Alice, bob, carol and an anonymous caller, each through the official MCP SDK client."""
    url, ca = stack.envoy.url(), stack.pki.ca_cert
    out = await agent_session("alice", ALICE_CALLS, url=url, ca=ca, cert=stack.pki.client(ALICE))
    out += await agent_session("bob", BOB_CALLS, url=url, ca=ca, cert=stack.pki.client(BOB))
    out += await agent_session("carol", CAROL_CALLS, url=url, ca=ca, cert=stack.pki.client(CAROL))

    async def anonymous_connects() -> str:
        async with mcp_client(url, ca=ca, cert=None) as mcp:
            return f"connected (protocol {mcp.protocol_version})"

    print("  anonymous client (no certificate) connecting ...")
    out.append(await attempt("anonymous", "connect (server/discover, initialize)", "deny", anonymous_connects))
    return out


def show_outcomes(outcomes: list[Outcome]) -> None:
    rows = [[o.agent, o.call, o.decision.upper(), shorten(o.seen)] for o in outcomes]

    def paint(row: list[str], text: str) -> str:
        return green(text) if row[2] == "ALLOW" else red(text) if row[2] in ("DENY", "ERROR") else text

    table(["agent", "call", "decision", "what the client saw"], rows, paint)


# --- step 4: evidence ------------------------------------------------------------------------

def decision_counters(envoy: Envoy) -> dict[str, int]:
    """Grantwall's `grantwall_requests{decision,reason}` series in /stats/prometheus, with their values."""
    out: dict[str, int] = {}
    for line in envoy.prometheus().splitlines():
        if line.startswith("grantwall_requests{"):
            series, value = line.rsplit(" ", 1)
            out[series] = int(float(value))
    return out


def audit_records(envoy: Envoy, expected: int) -> list[dict]:
    """Grantwall's decision records from Envoy's access log.

    Envoy writes a line when a stream ends and flushes every 100 ms, so wait until there are
    as many records as the counters say decisions were made (or 3 s have passed).
    """
    envoy.wait_access_log(lambda e: e.get("grantwall") not in (None, "", "-"), count=expected, timeout=3.0)
    return [a for a in envoy.audits() if isinstance(a, dict)]


def show_audits(audits: list[dict]) -> None:
    def who(a: dict) -> str:
        ident = a.get("identity")
        return ident.rsplit("/", 1)[-1] if ident else "(none)"

    def rule(a: dict) -> str:
        return f"{a['policy']}/{a['rule']}" if a.get("policy") else "-"

    rows = [[a.get("decision", "?"), a.get("reason", "?"), who(a), str(a.get("mcpMethod") or a.get("httpMethod") or "-"),
             str(a.get("target") or "-"), rule(a)] for a in audits]
    table(["decision", "reason", "identity", "mcpMethod", "target", "policy/rule"], rows,
          lambda row, text: green(text) if row[0] == "allow" else red(text))
    print(dim("  (bob's tools/list is the SDK's own: it lists tools to validate the result of its first call)"))
    denied = [a for a in audits if a.get("decision") == "deny" and a.get("identity")]
    if denied:
        print("  One denial in full (what a security engineer sees when asking \"why was this refused?\"):")
        print(f"     {json.dumps(denied[0], separators=(',', ':'))}")


def show_counters(counters: dict[str, int]) -> None:
    """Every reason is pre-registered at 0; show the ones that counted something."""
    for series, value in counters.items():
        if value:
            print(f"     {series} {value}")
    zero = sum(1 for v in counters.values() if not v)
    if not counters:
        print("     (no grantwall_requests counters)")
    elif zero:
        print(dim(f"     ({zero} more, one per other decision/reason, are 0)"))


def counted(counters: dict[str, int], decision: str) -> int:
    return sum(v for k, v in counters.items() if f'decision="{decision}"' in k)


# --- step 5: agent to agent ---------------------------------------------------------------

async def a2a_message(url: str, ca: Path, cert: Any, text: str) -> str:
    """One message from the official a2a-sdk client; returns what agent B answered."""
    import httpx
    from a2a.client import ClientConfig, ClientFactory
    from a2a.helpers.proto_helpers import new_text_message
    from a2a.types import AgentCapabilities, AgentCard, AgentInterface, Role, SendMessageRequest

    card = AgentCard(name="agent-b", version="1", capabilities=AgentCapabilities(streaming=False),
                     supported_interfaces=[AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version="1.0")])
    async with httpx.AsyncClient(verify=ssl_context(ca, cert), trust_env=False, timeout=15) as http:
        client = ClientFactory(ClientConfig(httpx_client=http, streaming=False)).create(card)
        request = SendMessageRequest(message=new_text_message(text, role=Role.ROLE_USER))
        events = [event async for event in client.send_message(request)]
    return " ".join(str(e) for e in events)


def a2a_hop(workdir: Path, pki: Pki, started: list[Any], checks: Checks) -> None:
    """Agent A (alice) messages agent B through the gateway; agent C (carol) is refused before B sees it."""
    cmd = [rel(COMPILER), "compile", "-f", rel(A2A_POLICY)]
    print(f"  $ {' '.join(cmd)}   (GrantwallA2AAgent agent-b + GrantwallA2APolicy: alice -> agent-b)")
    done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise SystemExit(red(f"  grantwall compile failed ({done.returncode}):\n{done.stderr}"))
    agent_b = start_a2a_server(workdir / "agent-b")
    started.append(agent_b)
    boot = render_bootstrap(ca_cert=pki.ca_cert, server_cert=pki.server_cert, server_key=pki.server_key,
                            upstream_port=agent_b.port, access_log=workdir / "envoy-a2a" / "access.log",
                            plugin_config=done.stdout, wasm_path=WASM)
    envoy = start_envoy(workdir / "envoy-a2a", boot)
    started.append(envoy)
    print(f"  Agent B (a2a-sdk server, skills echo + admin-reset) behind a second Envoy: {envoy.url('/')}")
    url = envoy.url("/")
    rows: list[list[str]] = []
    try:
        answer = asyncio.run(a2a_message(url, pki.ca_cert, pki.client(ALICE), "hello from A"))
        alice = ("allow", answer)
    except Exception as exc:  # noqa: BLE001 - shown and checked below
        alice = ("error", describe(exc))
    try:
        answer = asyncio.run(a2a_message(url, pki.ca_cert, pki.client(CAROL), "hello from C"))
        carol = ("allow", answer)
    except Exception as exc:  # noqa: BLE001
        carol = ("deny" if "403" in str(exc) or "forbidden" in str(exc).lower() else "error", describe(exc))
    rows.append(["A (alice)", "SendMessage -> agent B", "allow", alice[0], shorten(alice[1])])
    rows.append(["C (carol)", "SendMessage -> agent B", "deny", carol[0], shorten(carol[1])])
    print()
    table(["agent", "call", "expected", "got", "client saw"], rows)
    received = [e["body"] for e in agent_b.log.entries("request")]
    print(f"  Agent B's own log: {len(received)} request(s) received")
    checks.expect(alice[0] == "allow" and "echo: hello from A" in alice[1], "A2A: agent A's message reached agent B",
                  alice[1])
    checks.expect(carol[0] == "deny", "A2A: agent C refused at the gateway", carol[1])
    checks.expect(len(received) == 1 and "hello from A" in received[0] and "hello from C" not in "".join(received),
                  "A2A: agent B received exactly agent A's message", f"received {received}")
    card = httpx_get_card(envoy, pki)
    checks.expect([s["id"] for s in card.get("skills", [])] == ["echo"], "A2A: agent A's card shows only its skill",
                  json.dumps(card)[:200])
    print(f"  Agent B's card as agent A sees it: skills {[s['id'] for s in card.get('skills', [])]}, "
          f"interface {card.get('supportedInterfaces', [{}])[0].get('url')}")


def httpx_get_card(envoy: Envoy, pki: Pki) -> dict:
    import httpx
    with httpx.Client(verify=ssl_context(pki.ca_cert, pki.client(ALICE)), trust_env=False, timeout=10) as h:
        return h.get(envoy.url("/.well-known/agent-card.json")).json()


# --- step 6: verdict -----------------------------------------------------------------------

def check_everything(outcomes: list[Outcome], audits: list[dict], executed: list[str], received: list[str],
                     upstream_requests: int, counters: dict[str, int], checks: Checks) -> None:
    """Every claim the demo makes, checked against the client, the upstream and Envoy."""
    for o in outcomes:
        checks.expect(o.decision == o.expected, f"{o.agent} {o.call}",
                      f"expected {o.expected}, got {o.decision} ({o.seen})")
        if o.expected == "deny" and o.decision == "deny":
            checks.expect(FORBIDDEN in o.seen, f"{o.agent} {o.call}: KAN's denial message", o.seen)
    by_call = {(o.agent, o.call): o for o in outcomes}
    checks.expect("5" in by_call[("alice", "get-sum(2, 3)")].seen, "get-sum(2, 3) returned 5",
                  by_call[("alice", "get-sum(2, 3)")].seen)

    checks.expect("delete-everything" not in received, "upstream never received the delete-everything call",
                  f"received {received}")
    allowed_records = sum(1 for a in audits if a.get("decision") == "allow")
    checks.expect(upstream_requests == allowed_records,
                  "upstream received exactly the requests the filter allowed, none of the denied ones",
                  f"{upstream_requests} upstream requests, {allowed_records} allow records")
    expected_runs = ["get-sum", "echo", "echo", "get-sum", "echo"]
    checks.expect(executed == expected_runs, f"upstream executed exactly {', '.join(expected_runs)}",
                  f"executed {executed}")
    carol = [(a.get("target"), a.get("decision")) for a in audits
             if a.get("identity") == CAROL and a.get("mcpMethod") == "tools/call"]
    checks.expect(carol == [("get-sum", "allow"), ("get-sum", "deny"), ("echo", "allow"), ("echo", "deny")],
                  "audit records: carol's argument constraints decided each call", f"got {carol}")

    tool_audits = {(a.get("identity"), a.get("target")): a for a in audits if a.get("mcpMethod") == "tools/call"}
    for ident, target, decision in ((ALICE, "get-sum", "allow"), (ALICE, "delete-everything", "deny"),
                                    (ALICE, "echo", "allow"), (BOB, "echo", "allow"), (BOB, "get-sum", "deny")):
        got = tool_audits.get((ident, target), {}).get("decision")
        checks.expect(got == decision, f"audit record: {ident.rsplit('/', 1)[-1]} tools/call {target} = {decision}",
                      f"got {got}")
    anonymous = [a for a in audits if not a.get("identity")]
    checks.expect(bool(anonymous) and all(a.get("decision") == "deny" for a in anonymous),
                  "audit records: every anonymous request denied", json.dumps(anonymous)[:300])
    for decision in ("allow", "deny"):
        records = sum(1 for a in audits if a.get("decision") == decision)
        checks.expect(records > 0 and counted(counters, decision) == records,
                      f"Prometheus counts as many {decision} decisions as there are {decision} audit records",
                      f"counters {counted(counters, decision)}, records {records}")


# --- main ----------------------------------------------------------------------------------

def preflight() -> None:
    missing = [rel(p) for p in (WASM, COMPILER) if not p.exists()]
    if missing:
        raise SystemExit(f"missing {', '.join(missing)}: run `make build` first (or `make demo`).")


def main() -> int:
    started_at = time.monotonic()
    preflight()
    checks = Checks()
    print(bold("Grantwall demo: KAN access policies enforced on real MCP traffic in Envoy"))

    step(1, "Compile the KAN policies")
    plugin_config = compile_policies()

    started: list[Any] = []  # processes to stop, whatever happens
    with tempfile.TemporaryDirectory(prefix="grantwall-demo-") as tmp:
        try:
            step(2, "Start the MCP server and Envoy with the Grantwall filter")
            stack = start_stack(Path(tmp), plugin_config, started)

            step(3, "Agents call tools through the official MCP SDK")
            outcomes = asyncio.run(run_agents(stack))
            print()
            show_outcomes(outcomes)

            step(4, "The evidence")
            print("  Envoy's audit records (access-log field `grantwall`), one per request the filter judged:")
            counters = decision_counters(stack.envoy)
            audits = audit_records(stack.envoy, expected=sum(counters.values()))
            show_audits(audits)
            executed = stack.upstream.log.tools_executed()
            received = stack.upstream.log.tool_calls_received()
            upstream_requests = len(stack.upstream.log.requests())
            print()
            print("  The MCP server's own log (what reached it and what ran):")
            print(f"     tools/call requests received: {', '.join(received) or '(none)'}")
            print(f"     tools executed:               {', '.join(executed) or '(none)'}")
            print(f"     HTTP requests received:       {upstream_requests} (the allowed ones above)")
            print()
            print(f"  Decision counters ({stack.envoy.admin}/stats/prometheus):")
            show_counters(counters)

            step(5, "Agent to agent: A may message B, C may not (A2A, a2a-sdk client and server)")
            a2a_hop(Path(tmp), stack.pki, started, checks)

            step(6, "Verdict")
            check_everything(outcomes, audits, executed, received, upstream_requests, counters, checks)
        finally:
            for proc in reversed(started):
                proc.stop()

    elapsed = time.monotonic() - started_at
    if checks.failed:
        print(red(f"  FAILED: {len(checks.failed)} of {checks.count} expectations did not hold:"))
        for failure in checks.failed:
            print(red(f"   - {failure}"))
        print(f"  ({elapsed:.1f} s)")
        return 1
    print(green(f"  OK: all {checks.count} expectations held: allowed calls ran, denied calls were refused "
                f"at the gateway and never reached the MCP server. ({elapsed:.1f} s)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
