"""The benchmark matrix: which requests go to which Envoy configuration, and what each must answer.

Cells are grouped by (body size, grants). Within a group every configuration sees the same request
body and identity; the pass-through baseline only depends on the body, so it runs once per group with
the allowed body and serves as the baseline for that group's allowed and denied rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bench import policies

KIB = 1024
MIB = 1024 * KIB


def size_label(n: int) -> str:
    return f"{n // MIB} MiB" if n >= MIB else f"{n // KIB} KiB" if n >= KIB else f"{n} B"


@dataclass(frozen=True)
class Instance:
    """One running Envoy: a configuration kind with a policy size (and Grantwall's audit switch)."""

    kind: str                      # passthrough | native | grantwall
    grants: int = 10
    audit_log: bool = False
    jwt: bool = False              # callers present a service-account token (native: + jwt_authn)

    @property
    def name(self) -> str:
        if self.kind == "passthrough":
            return "passthrough"
        suffix = ("+audit" if self.audit_log else "") + ("+jwt" if self.jwt else "")
        return f"{self.kind}{suffix}-{self.grants}"

    @property
    def label(self) -> str:
        base = {"passthrough": "pass-through", "native": "native MCP+RBAC", "grantwall": "Grantwall"}[self.kind]
        if self.jwt and self.kind == "native":
            base = "native jwt_authn+MCP+RBAC"
        return base + (" (audit log on)" if self.audit_log else "")


@dataclass(frozen=True)
class Cell:
    """One (Envoy, request) pair measured repeatedly."""

    instance: Instance
    size: int                      # request body bytes (tools/call); 0 for tools/list
    grants: int
    verdict: str                   # allow | deny: what the policy says about the request
    op: str = "call"               # call: tools/call; list: tools/list of LIST_TOOLS tools, filtered per caller
    auth: str = "xfcc"             # how the caller is named: xfcc (trusted header) | jwt (bearer token)

    @property
    def tool(self) -> str:
        return policies.ALLOWED_TOOL if self.verdict == "allow" else policies.DENIED_TOOL

    @property
    def path(self) -> str:
        return policies.LIST_PATH if self.op == "list" else policies.MCP_PATH

    @property
    def body_key(self) -> str:
        return "list" if self.op == "list" else f"{self.size}-{self.tool}"

    def body(self) -> bytes:
        return policies.tools_list_body() if self.op == "list" else policies.tools_call_body(self.size, self.tool)

    def headers(self) -> dict[str, str]:
        return policies.caller_headers(self.grants, jwt=self.auth == "jwt")

    @property
    def forwarded(self) -> bool:
        """Whether the request must reach the upstream (pass-through forwards everything)."""
        return self.instance.kind == "passthrough" or self.verdict == "allow"

    @property
    def scenario(self) -> str:
        if self.op == "list":
            return f"tools/list of {policies.LIST_TOOLS} tools, {self.grants:,} grants"
        jwt = ", JWT (RS256)" if self.auth == "jwt" else ""
        return f"tools/call {size_label(self.size)}, {self.grants:,} grants{jwt}, {self.verdict}"

    @property
    def key(self) -> str:
        return f"{self.instance.name}|{self.op}|{self.size}|{self.verdict}|{self.auth}"


@dataclass
class Group:
    size: int
    grants: int
    cells: list[Cell] = field(default_factory=list)


@dataclass
class Plan:
    groups: list[Group]
    seconds: float
    reps: int
    warmup_seconds: float
    connections: int

    @property
    def instances(self) -> list[Instance]:
        seen: dict[Instance, None] = {}
        for g in self.groups:
            for c in g.cells:
                seen.setdefault(c.instance, None)
        return list(seen)

    @property
    def cells(self) -> list[Cell]:
        return [c for g in self.groups for c in g.cells]

    def estimated_seconds(self) -> float:
        n = len(self.cells)
        return n * (self.reps * (self.seconds + 0.3) + self.warmup_seconds + 0.3)


def group(size: int, grants: int, *, passthrough: bool = True, audit: bool = False) -> Group:
    g = Group(size=size, grants=grants)
    if passthrough:
        g.cells.append(Cell(Instance("passthrough"), size, grants, "allow"))
    for verdict in ("allow", "deny"):
        g.cells.append(Cell(Instance("native", grants), size, grants, verdict))
        g.cells.append(Cell(Instance("grantwall", grants), size, grants, verdict))
        if audit:
            g.cells.append(Cell(Instance("grantwall", grants, audit_log=True), size, grants, verdict))
    return g


def jwt_group(size: int = KIB, grants: int = 10) -> Group:
    """The caller presents a Kubernetes service-account token (RS256) instead of an XFCC header. Pass-through
    forwards it; native runs Envoy's jwt_authn in front of MCP + RBAC; Grantwall verifies it itself. Both
    cache verified tokens, so this is the steady state of an agent reusing its token (the first sight of a
    token costs one signature check: the `jwt/verify *` micro-benchmarks)."""
    g = Group(size=size, grants=grants)
    g.cells.append(Cell(Instance("passthrough"), size, grants, "allow", auth="jwt"))
    for verdict in ("allow", "deny"):
        g.cells.append(Cell(Instance("native", grants, jwt=True), size, grants, verdict, auth="jwt"))
        g.cells.append(Cell(Instance("grantwall", grants, jwt=True), size, grants, verdict, auth="jwt"))
    return g


def list_group(grants: int = 10) -> Group:
    """tools/list answered with 100 tools: Grantwall filters it to the caller's 10; the native chain has no
    list filtering (KAN lets anyone list tools) and forwards all 100, like pass-through."""
    g = Group(size=0, grants=grants)
    g.cells = [Cell(Instance("passthrough"), 0, grants, "allow", "list"),
               Cell(Instance("native", grants), 0, grants, "allow", "list"),
               Cell(Instance("grantwall", grants), 0, grants, "allow", "list")]
    return g


def full_plan(*, seconds: float, reps: int, connections: int) -> Plan:
    groups = [group(s, 10, audit=(s == KIB)) for s in (256, KIB, 64 * KIB, MIB)]
    # Policy size: 1 KiB bodies; the pass-through baseline is the 1 KiB group's.
    groups += [group(KIB, g, passthrough=False) for g in (1_000, 100_000)]
    groups.append(list_group())
    groups.append(jwt_group())
    return Plan(groups, seconds=seconds, reps=reps, warmup_seconds=1.0, connections=connections)


def quick_plan(*, seconds: float, reps: int, connections: int) -> Plan:
    groups = [group(KIB, 10), group(KIB, 1_000, passthrough=False), list_group(), jwt_group()]
    return Plan(groups, seconds=seconds, reps=reps, warmup_seconds=1.0, connections=connections)


# Scenario slots the issue asks for that this harness does not measure yet.
NOT_YET: list[tuple[str, str]] = []
