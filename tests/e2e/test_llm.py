"""LLM traffic through real Envoy (Wasm filter) to a real OpenAI/Anthropic-compatible server (llm_server.py).

The policies are docs/llm.md's two seed examples (production may use gpt-4* only, development any model;
1,000,000 tokens per namespace per day) plus tests/e2e/policies/llm.yaml (small budgets, each for its own
namespace of callers). Every refusal is checked against what the upstream received: nothing.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import zlib
from pathlib import Path

import httpx
import pytest

from .clients import ssl_context
from .envoy import CLUSTER, _hcm, _one, LISTENER
from .procs import spawn, stop

LLM_CLUSTER = "outbound|443||api.openai.com"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "llm.md"
TEST_POLICY = Path(__file__).with_name("policies") / "llm.yaml"
CHAT = "/v1/chat/completions"


def docs_policies() -> str:
    """The YAML blocks of docs/llm.md that define GrantwallModelPolicies, as one multi-document text."""
    blocks = re.findall(r"```yaml\n(.*?)```", DOCS.read_text(), re.S)
    found = [b for b in blocks if "kind: GrantwallModelPolicy" in b]
    assert len(found) == 2, "docs/llm.md should hold the two seed policies"
    return "---\n".join(found)


class LlmServer:
    def __init__(self, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        port_file, self.log_path = workdir / "port", workdir / "requests.jsonl"
        port_file.unlink(missing_ok=True)
        self.log_path.write_text("")
        script = Path(__file__).with_name("llm_server.py")
        with open(workdir / "stderr", "ab") as err:
            self.proc = spawn([sys.executable, str(script), "--port-file", str(port_file), "--log", str(self.log_path)],
                              stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + 20
        self.port = 0
        while time.monotonic() < deadline:
            if port_file.exists() and port_file.read_text():
                self.port = int(port_file.read_text())
                try:
                    if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
            time.sleep(0.05)
        stop(self.proc)
        raise RuntimeError("llm_server.py did not start")

    def requests(self) -> list[dict]:
        return [json.loads(line) for line in self.log_path.read_text().splitlines() if line]

    def clear(self) -> None:
        self.log_path.write_text("")


@pytest.fixture(scope="module")
def llm(e2e_dir):
    server = LlmServer(e2e_dir / "llm-server")
    yield server
    stop(server.proc)


@pytest.fixture
def received(llm):
    llm.clear()
    return llm


def route_llm(port: int):
    """Envoy patch: a cluster for the LLM server, and /v1/ routed to it (the MCP route stays as it is)."""
    def patch(boot: dict) -> None:
        mcp = _one(boot["static_resources"]["clusters"], CLUSTER, "cluster")
        cluster = json.loads(json.dumps(mcp))
        cluster["name"] = cluster["load_assignment"]["cluster_name"] = LLM_CLUSTER
        for group in cluster["load_assignment"]["endpoints"]:
            for ep in group["lb_endpoints"]:
                ep["endpoint"]["address"]["socket_address"].update(address="127.0.0.1", port_value=port)
        boot["static_resources"]["clusters"].append(cluster)
        listener = _one(boot["static_resources"]["listeners"], LISTENER, "listener")
        host = _hcm(listener)["route_config"]["virtual_hosts"][0]
        host["routes"].insert(0, {"match": {"prefix": "/v1/"}, "route": {"cluster": LLM_CLUSTER, "timeout": "0s"}})
    return patch


@pytest.fixture(scope="module")
def config(compile_policy):
    return compile_policy(docs_policies() + "---\n" + TEST_POLICY.read_text())


@pytest.fixture(scope="module")
def envoy(start_envoy, config, llm):
    return start_envoy(config, patch=route_llm(llm.port), log_level="info")


@pytest.fixture(scope="module")
def agent(pki, client_cert):
    """`agent(namespace, name="agent")` -> an httpx client with that service account's SPIFFE certificate."""
    clients: list[httpx.Client] = []

    def make(namespace: str, name: str = "agent") -> httpx.Client:
        c = httpx.Client(verify=ssl_context(pki.ca_cert, client_cert(name, namespace)), timeout=20, trust_env=False)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()


def chat(model: str, **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "hello"}], **extra}


def usage_records(envoy, after: int = 0, caller: str | None = None) -> list[dict]:
    """The `llm-usage` audit lines logged after line `after`, of one caller (`namespace/sa`) if given."""
    lines = envoy.log_text().splitlines()[after:]
    out = []
    for line in lines:
        m = re.search(r"grantwall audit (\{.*\})", line)
        if m and '"reason":"llm-usage"' in m.group(1):
            record = json.loads(m.group(1))
            if caller is None or record["identity"].endswith("/ns/{}/sa/{}".format(*caller.split("/"))):
                out.append(record)
    return out


def wait_usage(envoy, count: int, after: int = 0, timeout: float = 5.0, caller: str | None = None) -> list[dict]:
    """Usage is logged when the response ends, which may be just after the client has read it."""
    deadline = time.monotonic() + timeout
    while True:
        found = usage_records(envoy, after, caller)
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def log_mark(envoy) -> int:
    return len(envoy.log_text().splitlines())


# --- model grants ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("namespace,model,allowed", [
    ("production", "gpt-4o", True),
    ("production", "gpt-4", True),
    ("production", "gpt-3.5-turbo", False),
    ("production", "GPT-4o", False),
    ("development", "llama-3.1-8b", True),
    ("development", "gpt-4o", True),
    ("staging", "gpt-4o", False),          # no grant for this namespace at all
])
def test_model_grants_per_namespace(envoy, agent, received, namespace, model, allowed):
    resp = agent(namespace).post(envoy.url(CHAT), json=chat(model))
    seen = [json.loads(r["body"])["model"] for r in received.requests()]
    if allowed:
        assert resp.status_code == 200, resp.text
        assert resp.json()["choices"][0]["message"]["content"]
        assert seen == [model]
        # The response must stay readable for its usage: Grantwall asks for it uncompressed.
        assert resp.request.headers["accept-encoding"] and received.requests()[0]["accept_encoding"] is None
    else:
        assert resp.status_code == 403, resp.text
        err = resp.json()["error"]
        assert err["code"] == "model_not_allowed" and err["type"] == "invalid_request_error"
        assert model in err["message"] and f"/ns/{namespace}/sa/agent" in err["message"]
        assert seen == [], "a refused model must never reach the upstream"


def test_every_api_is_judged(envoy, agent, received):
    prod = agent("production")
    for path, body in [("/v1/completions", {"model": "gpt-3.5-turbo-instruct", "prompt": "x"}),
                       ("/v1/responses", {"model": "o3", "input": "x"}),
                       ("/v1/embeddings", {"model": "text-embedding-3-small", "input": "x"}),
                       ("/v1/messages", {"model": "claude-sonnet-4", "max_tokens": 10, "messages": []})]:
        resp = prod.post(envoy.url(path), json=body)
        assert resp.status_code == 403, (path, resp.text)
        if path == "/v1/messages":
            assert resp.json()["type"] == "error" and resp.json()["error"]["type"] == "permission_error"
        else:
            assert resp.json()["error"]["code"] == "model_not_allowed"
    assert received.requests() == []
    dev = agent("development")
    for path, body in [("/v1/responses", {"model": "o3", "input": "x"}),
                       ("/v1/embeddings", {"model": "text-embedding-3-small", "input": "x"}),
                       ("/v1/messages", {"model": "claude-sonnet-4", "max_tokens": 10, "messages": []})]:
        assert dev.post(envoy.url(path), json=body).status_code == 200
    assert [r["path"] for r in received.requests()] == ["/v1/responses", "/v1/embeddings", "/v1/messages"]


def test_audit_record_names_model_and_grant(envoy, agent, received):
    envoy.clear_access_log()
    assert agent("production").post(envoy.url(CHAT), json=chat("gpt-4o-mini")).status_code == 200
    assert agent("production").post(envoy.url(CHAT), json=chat("o3")).status_code == 403
    envoy.wait_access_log(count=2)
    allow, deny = [a for a in envoy.audits() if a][-2:]
    assert allow["decision"] == "allow" and allow["model"] == "gpt-4o-mini"
    assert allow["policy"] == "ai/model-access" and allow["rule"] == "production-gpt-4-only"
    assert allow["identity"] == "spiffe://cluster.local/ns/production/sa/agent"
    assert deny["decision"] == "deny" and deny["reason"] == "model-denied" and deny["model"] == "o3"


# --- malformed requests --------------------------------------------------------------------------------------

@pytest.mark.parametrize("body,content_type", [
    (b'{"model":"gpt-4o","model":"llama-3"}', "application/json"),
    (b'\xef\xbb\xbf{"model":"llama-3"}', "application/json"),
    (b'{"model":"gpt-4o","Model":"llama-3"}', "application/json"),
    (b'{"model":"gpt-4o","messages":[{"role":"user","role":"system","content":"x"}]}', "application/json"),
    (b'{"model":["llama-3"]}', "application/json"),
    (b'{"model":"gpt-4o","stream":"yes"}', "application/json"),
    (b'{"model":"gpt-4o","max_tokens":1e3}', "application/json"),
    (b'[{"model":"gpt-4o"}]', "application/json"),
    (b'{"model":"gpt-4o"', "application/json"),
    (b'{"model":"gpt-4o"}', "text/plain"),
])
def test_malformed_bodies_are_refused(envoy, agent, received, body, content_type):
    # A development caller may use any model: only the body's form can be the reason for the refusal.
    resp = agent("development").post(envoy.url(CHAT), content=body, headers={"content-type": content_type})
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["code"] == "invalid_request_body"
    assert received.requests() == []


def test_a_body_in_many_chunks_is_judged_whole(envoy, agent, received):
    body = json.dumps(chat("gpt-4o", max_tokens=5)).encode()
    # "gpt-4o" in one chunk, then a second "model" in a later chunk: the whole body is judged, never a prefix.
    dup = body[:-1] + b',"model":"o3"}'
    for content, status in [(body, 200), (dup, 400)]:
        received.clear()
        pieces = [content[i:i + 7] for i in range(0, len(content), 7)]
        resp = agent("production").post(envoy.url(CHAT), content=iter(pieces), headers={"content-type": "application/json"})
        assert resp.status_code == status, resp.text
        assert len(received.requests()) == (1 if status == 200 else 0)


def test_endpoints_grantwall_does_not_read_are_refused(envoy, agent, received):
    dev = agent("development")
    for path in ["/v1/audio/transcriptions", "/v1/chat%2Fcompletions", "/v1/messages/batches"]:
        resp = dev.post(envoy.url(path), json={"model": "whisper-1"})
        assert resp.status_code == 404, (path, resp.text)
    assert received.requests() == []
    # A GET carries no model and passes.
    assert dev.get(envoy.url("/v1/models")).status_code == 200


# --- budgets ---------------------------------------------------------------------------------------------

def test_a_stream_that_spends_the_budget_completes_and_the_next_request_gets_429(envoy, agent, received):
    team_a = agent("team-a")
    mark = log_mark(envoy)
    # 10 input + 150 output tokens: over team-a's 100-token hourly budget, which is still untouched.
    with team_a.stream("POST", envoy.url(CHAT), json=chat("gpt-4o", stream=True),
                       headers={"x-test-output-tokens": "150"}) as resp:
        assert resp.status_code == 200
        events = [line for line in resp.iter_lines() if line.startswith("data: ")]
    # The client did not ask for usage: it gets exactly the stream it asked for (no usage chunk) ...
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e[6:]) for e in events[:-1]]
    assert len(chunks) == 3 and all(c["choices"] for c in chunks)
    # ... while Grantwall asked the upstream for usage on its behalf.
    sent = json.loads(received.requests()[0]["body"])
    assert sent["stream_options"] == {"include_usage": True}
    [record] = wait_usage(envoy, 1, mark, caller="team-a/agent")
    assert (record["tokensIn"], record["tokensOut"], record["tokensCharged"]) == (10, 150, 160)
    assert record["model"] == "gpt-4o"
    received.clear()
    resp = team_a.post(envoy.url(CHAT), json=chat("gpt-4o"))
    assert resp.status_code == 429, resp.text
    err = resp.json()["error"]
    assert err["code"] == "token_budget_exceeded" and "team-a-hourly" in err["message"]
    retry = int(resp.headers["retry-after"])
    assert 0 < retry <= 3600
    # The counter is shared data: every worker sees it, whichever one a new connection lands on.
    for i in range(4):
        fresh = agent("team-a")   # a new client: a new connection
        assert fresh.post(envoy.url(CHAT), json=chat("gpt-4o")).status_code == 429, f"connection {i}"
    assert received.requests() == []
    # Another namespace's budget is its own.
    assert agent("team-b").post(envoy.url(CHAT), json=chat("gpt-4o", max_tokens=5)).status_code == 200


def test_a_client_that_asked_for_usage_keeps_its_usage_chunk(envoy, agent, received):
    mark = log_mark(envoy)
    with agent("team-d", "asker").stream("POST", envoy.url(CHAT),
                                          json=chat("gpt-4o", stream=True, stream_options={"include_usage": True}),
                                          headers={"x-test-output-tokens": "7"}) as resp:
        events = [line for line in resp.iter_lines() if line.startswith("data: {")]
    last = json.loads(events[-1][6:])
    assert last["choices"] == [] and last["usage"]["total_tokens"] == 17
    [record] = wait_usage(envoy, 1, mark, caller="team-d/asker")
    assert record["tokensCharged"] == 17


@pytest.mark.parametrize("path,body", [
    ("/v1/messages", {"model": "claude-sonnet-4", "max_tokens": 100, "messages": [], "stream": True}),
    ("/v1/messages", {"model": "claude-sonnet-4", "max_tokens": 100, "messages": []}),
    ("/v1/responses", {"model": "o3", "input": "x", "stream": True}),
    ("/v1/responses", {"model": "o3", "input": "x"}),
    ("/v1/completions", {"model": "gpt-3.5-turbo-instruct", "prompt": "x", "stream": True}),
    ("/v1/embeddings", {"model": "text-embedding-3-small", "input": "x"}),
])
def test_usage_is_read_from_every_api_json_and_sse(envoy, agent, received, path, body):
    mark = log_mark(envoy)
    name = f"u{zlib.crc32((path + json.dumps(body)).encode())}"   # one budget counter per case
    resp = agent("team-d", name).post(envoy.url(path), json=body, headers={"x-test-output-tokens": "33"})
    assert resp.status_code == 200, resp.text
    [record] = wait_usage(envoy, 1, mark, caller=f"team-d/{name}")
    expected = 10 if path == "/v1/embeddings" else 43
    assert record["tokensCharged"] == expected, record
    assert record["detail"] is None, "usage must be read, not estimated"


def test_the_budget_resets_with_its_window(envoy, agent, received):
    team_b = agent("team-b", "resetter")
    # Start just after a 4 s window boundary, so the whole spend-and-refuse happens in one window.
    time.sleep(4 - time.time() % 4 + 0.1)
    assert team_b.post(envoy.url(CHAT), json=chat("gpt-4o"), headers={"x-test-output-tokens": "200"}).status_code == 200
    deadline = time.monotonic() + 3
    while True:
        resp = team_b.post(envoy.url(CHAT), json=chat("gpt-4o"))
        if resp.status_code == 429 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert resp.status_code == 429, "the 210 tokens should have spent the 100-token window"
    retry = int(resp.headers["retry-after"])
    assert 1 <= retry <= 4
    time.sleep(retry + 0.2)
    assert team_b.post(envoy.url(CHAT), json=chat("gpt-4o", max_tokens=1)).status_code == 200


def test_max_tokens_is_capped_to_what_is_left(envoy, agent, received):
    team_c = agent("team-c")
    mark = log_mark(envoy)
    assert team_c.post(envoy.url(CHAT), json=chat("gpt-4o", max_tokens=1000)).status_code == 200
    assert json.loads(received.requests()[-1]["body"])["max_tokens"] == 200, "capped to the whole budget"
    assert [r["tokensCharged"] for r in wait_usage(envoy, 1, mark, caller="team-c/agent")] == [30]
    # 170 left: a request without a limit gets one (below the add threshold).
    received.clear()
    assert team_c.post(envoy.url(CHAT), json=chat("gpt-4o")).status_code == 200
    assert json.loads(received.requests()[-1]["body"])["max_tokens"] == 170
    wait_usage(envoy, 2, mark, caller="team-c/agent")
    # A lower limit than what is left is kept as it is.
    received.clear()
    assert team_c.post(envoy.url(CHAT), json=chat("gpt-4o", max_completion_tokens=5)).status_code == 200
    sent = json.loads(received.requests()[-1]["body"])
    assert sent["max_completion_tokens"] == 5 and "max_tokens" not in sent


# --- budget state across a policy update ---------------------------------------------------------------

def test_budget_counters_survive_a_policy_update(start_envoy, compiler_path, wasm_path, llm, agent, tmp_path):
    """The policy changes through file-based ECDS (as in test_live_update.py): the new policy decides at once,
    and the tokens spent under the old one still count."""
    from .envoy import WASM_FILTER, WASM_TYPE

    ecds = tmp_path / "grantwall-ecds.yaml"
    v1 = tmp_path / "v1.yaml"
    v1.write_text(docs_policies() + "---\n" + TEST_POLICY.read_text())
    v2 = tmp_path / "v2.yaml"
    grant_o3 = "  - name: development-any-model\n"
    assert v1.read_text().count(grant_o3) == 1
    v2.write_text(v1.read_text().replace(grant_o3, "  - name: production-o3\n    source:\n      type: Namespace\n"
                                         "      namespace: production\n    models: [o3]\n" + grant_o3))

    def publish(policy: Path) -> None:
        subprocess.run([str(compiler_path), "compile", "-f", str(policy), "--emit", "ecds", "--wasm-file",
                        str(wasm_path), "-o", str(ecds)], check=True, capture_output=True, timeout=30)

    publish(v1)

    def patch(boot: dict) -> None:
        route_llm(llm.port)(boot)
        boot["node"] = {"id": "grantwall-e2e", "cluster": "grantwall"}
        http_filters = _hcm(_one(boot["static_resources"]["listeners"], LISTENER, "listener"))["http_filters"]
        http_filters.insert(len(http_filters) - 1, {
            "name": WASM_FILTER,
            "config_discovery": {"config_source": {"path_config_source": {"path": str(ecds)}, "resource_api_version": "V3"},
                                 "type_urls": [WASM_TYPE]},
        })

    envoy = start_envoy(None, patch=patch, replace=False, log_level="info")
    stat = f"extension_config_discovery.http_filter.{WASM_FILTER}"
    version = lambda: envoy.stats(f"^{stat}.version_text$").get(f"{stat}.version_text")  # noqa: E731
    team_a, prod = agent("team-a", "updater"), agent("production", "updater")
    mark = log_mark(envoy)
    assert team_a.post(envoy.url(CHAT), json=chat("gpt-4o"), headers={"x-test-output-tokens": "150"}).status_code == 200
    wait_usage(envoy, 1, mark, caller="team-a/updater")
    assert team_a.post(envoy.url(CHAT), json=chat("gpt-4o")).status_code == 429
    assert prod.post(envoy.url(CHAT), json=chat("o3")).status_code == 403

    before = version()
    publish(v2)
    deadline = time.monotonic() + 15
    while version() == before:
        assert time.monotonic() < deadline, "Envoy did not apply the new policy"
        time.sleep(0.05)
    time.sleep(0.5)  # Envoy posts the accepted config to its workers
    assert prod.post(envoy.url(CHAT), json=chat("o3")).status_code == 200, "the new policy decides"
    resp = team_a.post(envoy.url(CHAT), json=chat("gpt-4o"))
    assert resp.status_code == 429, "tokens spent under the old policy still count"
    assert "160 of 100 tokens" in resp.json()["error"]["message"]
    envoy.stop()


# --- a real OpenAI SDK client ------------------------------------------------------------------------------

def test_the_openai_sdk_sees_its_own_error_types(envoy, agent, pki, client_cert, received):
    import openai

    def sdk(namespace: str, name: str) -> openai.OpenAI:
        http = httpx.Client(verify=ssl_context(pki.ca_cert, client_cert(name, namespace)), trust_env=False, timeout=20)
        # max_retries=0: by default the SDK would wait out Retry-After and try again.
        return openai.OpenAI(base_url=envoy.url("/v1"), api_key="unused", http_client=http, max_retries=0)

    prod = sdk("production", "sdk")
    done = prod.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert done.choices[0].message.content and done.usage.total_tokens == 30
    with pytest.raises(openai.PermissionDeniedError) as denied:
        prod.chat.completions.create(model="gpt-3.5-turbo", messages=[{"role": "user", "content": "hi"}])
    assert denied.value.status_code == 403 and denied.value.code == "model_not_allowed"
    assert [json.loads(r["body"])["model"] for r in received.requests()] == ["gpt-4o"]

    # team-d budgets are per identity, 1000 tokens an hour: one streamed answer spends them.
    agent_d = sdk("team-d", "sdk-streamer")
    mark = log_mark(envoy)
    stream = agent_d.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True,
                                             extra_headers={"x-test-output-tokens": "995"})
    chunks = list(stream)
    assert len(chunks) == 3 and all(c.choices for c in chunks), "no usage chunk the client did not ask for"
    wait_usage(envoy, 1, mark, caller="team-d/sdk-streamer")
    received.clear()
    with pytest.raises(openai.RateLimitError) as limited:
        agent_d.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert limited.value.status_code == 429 and limited.value.code == "token_budget_exceeded"
    assert 0 < int(limited.value.response.headers["retry-after"]) <= 3600
    assert received.requests() == []


@pytest.mark.parametrize("namespace,path,model", [
    ("production", CHAT, "gpt-4o-mini"),          # granted by rule
    ("production", CHAT, "o3"),                   # model-denied
    ("development", "/v1/messages", "claude-sonnet-4"),
    ("production", "/v1/audio/speech", "tts-1"),  # not an endpoint Grantwall reads: 404
])
def test_explain_gives_the_filters_own_llm_record(envoy, agent, received, compiler_path, tmp_path, namespace, path, model):
    import subprocess
    body = chat(model) if path != "/v1/messages" else {"model": model, "max_tokens": 5,
                                                        "messages": [{"role": "user", "content": "hi"}]}
    time.sleep(0.25)          # earlier tests' lines are flushed (every 100 ms) before the log is cut
    envoy.clear_access_log()
    resp = agent(namespace).post(envoy.url(path), json=body)
    envoy.wait_access_log(count=1)
    [seen] = [a for a in envoy.audits() if a and a["reason"] != "llm-usage"]
    policy = tmp_path / "policy.yaml"
    policy.write_text(docs_policies() + "---\n" + TEST_POLICY.read_text())
    done = subprocess.run([str(compiler_path), "explain", "-f", str(policy), "--cluster", LLM_CLUSTER, "--sa", f"{namespace}/agent",
                           "--model", model, "--path", path, "--json"], capture_output=True, text=True, timeout=30)
    assert done.returncode == (0 if resp.status_code == 200 else 3), (done.stderr, resp.text)
    assert json.loads(done.stdout) == seen
