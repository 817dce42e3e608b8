"""Deployment artifacts checked with real tools, not by reading our own output back:

- `grantwall package`: the OCI layout is read, verified (every blob re-hashed) and copied by skopeo (Debian's
  containers/image CLI); the module comes back out byte for byte by the rules Istio's image fetcher applies; the
  digest is the same on every run.
- `examples/wasmplugin.yaml`: valid against the WasmPlugin CRD schema (tests/e2e/schemas, written from Istio's
  published API) plus the CRD's CEL rules, and its `pluginConfig`, passed to Envoy as Istio passes it (JSON of the
  Struct), enforces the policy.
- `grantwall compile --emit envoy`: the stanza, pasted into the example bootstrap, runs in Envoy and enforces.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import jsonschema
import pytest
import yaml

from .clients import RawSession
from .conftest import in_ci
from .envoy import LISTENER, REPO_ROOT, WASM_FILTER, _hcm, _one

EXAMPLE_POLICIES = REPO_ROOT / "examples" / "policies"
WASMPLUGIN_EXAMPLE = REPO_ROOT / "examples" / "wasmplugin.yaml"
SCHEMA = Path(__file__).with_name("schemas") / "wasmplugin-v1alpha1.schema.json"
TAG = "e2e"
WASM_LAYER = "application/vnd.module.wasm.content.layer.v1+wasm"
TAR_GZIP_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
FORBIDDEN = "Access to this tool is forbidden."


@pytest.fixture(scope="module")
def skopeo() -> str:
    path = shutil.which("skopeo")
    if path:
        return path
    message = "skopeo is not installed (Debian: apt-get install skopeo; .ci/run installs it)"
    if in_ci():
        pytest.fail(f"CI=true and {message}", pytrace=False)
    pytest.skip(message)


def run(*cmd: str | Path, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([str(c) for c in cmd], capture_output=True, timeout=60)
    if check and done.returncode != 0:
        raise AssertionError(f"{cmd} failed ({done.returncode}):\n{done.stderr.decode(errors='replace')}")
    return done


def package(compiler: Path, wasm: Path, out: Path, *extra: str) -> str:
    done = run(compiler, "package", "--wasm", wasm, "-o", out, "--tar", f"{out}.tar", "--tag", TAG, *extra)
    return done.stdout.decode().strip()


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def istio_extract(image_dir: Path) -> bytes:
    """The module out of a `skopeo copy ... dir:` image, by the rules of Istio's image fetcher
    (pkg/wasm/imagefetcher.go): first the compat variant (last layer tar+gzip holding plugin.wasm), else the
    oci variant (exactly two layers, one of them the Wasm layer, read raw)."""
    manifest = json.loads((image_dir / "manifest.json").read_text())
    layers = manifest["layers"]
    blob = lambda d: (image_dir / d["digest"].split(":", 1)[1]).read_bytes()  # noqa: E731
    if layers and layers[-1]["mediaType"] == TAR_GZIP_LAYER:
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob(layers[-1])))) as tar:
            for member in tar:
                if Path(member.name).name == "plugin.wasm":
                    return tar.extractfile(member).read()
        raise AssertionError("compat layer without plugin.wasm")
    assert len(layers) == 2, f"Istio reads the oci variant only with exactly two layers, got {len(layers)}"
    wasm_layers = [layer for layer in layers if layer["mediaType"] == WASM_LAYER]
    assert wasm_layers, "no application/vnd.module.wasm.content.layer.v1+wasm layer"
    return blob(wasm_layers[0])


@pytest.mark.parametrize("variant", ["oci", "compat"])
def test_package_is_reproducible_and_skopeo_reads_copies_and_verifies_it(compiler_path, wasm_path, skopeo, tmp_path,
                                                                          variant):
    first = package(compiler_path, wasm_path, tmp_path / "a", "--variant", variant)
    second = package(compiler_path, wasm_path, tmp_path / "b", "--variant", variant)
    assert first.startswith("sha256:") and first == second
    assert tree(tmp_path / "a") == tree(tmp_path / "b")
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()

    # skopeo reads the manifest the index names; its digest is the one we printed (what WasmPlugin pins).
    raw = run(skopeo, "--insecure-policy", "inspect", "--raw", f"oci:{tmp_path / 'a'}:{TAG}").stdout
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == first
    # Copying re-hashes every blob; --preserve-digests fails if the manifest would have to change.
    run(skopeo, "--insecure-policy", "copy", "--preserve-digests", f"oci:{tmp_path / 'a'}:{TAG}", f"oci:{tmp_path / 'copy'}:{TAG}")
    copied = json.loads((tmp_path / "copy" / "index.json").read_text())
    assert [m["digest"] for m in copied["manifests"]] == [first]
    # The tarball is the same image, and the module comes out byte for byte.
    run(skopeo, "--insecure-policy", "copy", f"oci-archive:{tmp_path / 'a.tar'}:{TAG}", f"dir:{tmp_path / 'unpacked'}")
    assert istio_extract(tmp_path / "unpacked") == wasm_path.read_bytes()
    if variant == "compat":
        # A plain image config: skopeo's image view works and shows Go's names for WASI.
        info = json.loads(run(skopeo, "--insecure-policy", "inspect", f"oci:{tmp_path / 'a'}:{TAG}").stdout)
        assert (info["Architecture"], info["Os"], info["Digest"]) == ("wasm", "wasip1", first)


def test_skopeo_refuses_a_tampered_layout(compiler_path, wasm_path, skopeo, tmp_path):
    """The check above can fail: a flipped byte in the module blob is caught by its digest."""
    package(compiler_path, wasm_path, tmp_path / "a")
    manifest = json.loads(run(skopeo, "--insecure-policy", "inspect", "--raw", f"oci:{tmp_path / 'a'}:{TAG}").stdout)
    module = [layer for layer in manifest["layers"] if layer["mediaType"] == WASM_LAYER][0]
    blob = tmp_path / "a" / "blobs" / "sha256" / module["digest"].split(":", 1)[1]
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF
    blob.write_bytes(bytes(data))
    done = run(skopeo, "--insecure-policy", "copy", f"oci:{tmp_path / 'a'}:{TAG}", f"dir:{tmp_path / 'out'}", check=False)
    assert done.returncode != 0
    assert b"digest" in done.stderr.lower()


# --- WasmPlugin ------------------------------------------------------------------------------------------------

def cel_violations(doc: dict) -> list[str]:
    """The WasmPlugin CRD's x-kubernetes-validations rules, which JSON Schema cannot express."""
    spec = doc.get("spec", {})
    out = []
    if sum(k in spec for k in ("selector", "targetRef", "targetRefs")) > 1:
        out.append("only one of targetRefs or selector can be set")
    url = spec.get("url", "")
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme not in ("", "http", "https", "oci", "file"):
        out.append("url must have schema one of [http, https, file, oci]")
    refs = spec.get("targetRefs", []) + ([spec["targetRef"]] if "targetRef" in spec else [])
    for ref in refs:
        if [ref.get("group", ""), ref.get("kind")] not in (["core", "Service"], ["", "Service"],
                                                             ["gateway.networking.k8s.io", "Gateway"],
                                                             ["gateway.networking.k8s.io", "GatewayClass"],
                                                             ["networking.istio.io", "ServiceEntry"]):
            out.append(f"unsupported targetRef kind {ref.get('group')}/{ref.get('kind')}")
        if ref.get("namespace"):
            out.append("cross namespace referencing is not currently supported")
    return out


def wasmplugin_errors(doc: dict) -> list[str]:
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]
    return errors + cel_violations(doc)


def test_wasmplugin_example_is_a_valid_wasmplugin():
    doc = yaml.safe_load(WASMPLUGIN_EXAMPLE.read_text())
    assert wasmplugin_errors(doc) == []
    spec = doc["spec"]
    assert (spec["phase"], spec["failStrategy"], spec["type"]) == ("AUTHZ", "FAIL_CLOSE", "HTTP")
    assert spec["targetRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "agents"}]
    # A targetRefs policy must live in the Gateway's namespace: the one the compiled config names.
    assert doc["metadata"]["namespace"] + "/agents" == spec["pluginConfig"]["gateway"]["name"]


@pytest.mark.parametrize("mutate, error", [
    (lambda d: d["spec"].update(failStrategy="FAIL_OPEN_PLEASE"), "failStrategy"),
    (lambda d: d["spec"].update(failstrategy="FAIL_CLOSE"), "failstrategy"),
    (lambda d: d["spec"].update(sha256="sha256:" + "a" * 64), "sha256"),
    (lambda d: d["spec"].update(url="ftp://registry/grantwall"), "url must have schema"),
    (lambda d: d["spec"]["targetRefs"][0].update(namespace="other"), "cross namespace"),
    (lambda d: d["spec"].update(selector={"matchLabels": {"app": "x"}}), "only one of"),
    (lambda d: d["spec"].pop("url"), "'url' is a required property"),
])
def test_the_schema_check_catches_mistakes(mutate, error):
    doc = yaml.safe_load(WASMPLUGIN_EXAMPLE.read_text())
    mutate(doc)
    assert any(error in e for e in wasmplugin_errors(doc)), wasmplugin_errors(doc)


def test_wasmplugin_plugin_config_enforces_in_envoy(start_envoy, pki, client_cert, upstream_log):
    """Istio hands `pluginConfig` (a protobuf Struct) to the filter as its JSON: the filter loads it and enforces."""
    plugin_config = yaml.safe_load(WASMPLUGIN_EXAMPLE.read_text())["spec"]["pluginConfig"]
    envoy = start_envoy(json.dumps(plugin_config))
    assert_example_policy_enforced(envoy, pki, client_cert, upstream_log)


def assert_example_policy_enforced(envoy, pki, client_cert, upstream_log) -> None:
    """examples/policies/: alice may call get-sum, bob may not; the denied call never reaches the server."""
    with RawSession(envoy.url(), ca=pki.ca_cert, cert=client_cert("alice")) as s:
        s.initialize()
        assert "result" in s.call_tool("get-sum", {"a": 1, "b": 2})
    with RawSession(envoy.url(), ca=pki.ca_cert, cert=client_cert("bob")) as s:
        s.initialize()
        denied = s.call_tool("get-sum", {"a": 1, "b": 2})
        assert denied["error"]["code"] == 403 and denied["error"]["message"] == FORBIDDEN
    assert upstream_log.tools_executed() == ["get-sum"]


# --- Envoy stanza --------------------------------------------------------------------------------------------

def test_emitted_envoy_filter_runs_in_envoy(start_envoy, compiler_path, wasm_path, pki, client_cert, upstream_log):
    text = run(compiler_path, "compile", "-f", EXAMPLE_POLICIES, "--emit", "envoy", "--wasm-file", wasm_path).stdout
    filters = yaml.safe_load(text)
    assert len(filters) == 1
    config = filters[0]["typed_config"]["config"]
    assert config["failure_policy"] == "FAIL_CLOSED" and config["allow_on_headers_stop_iteration"] is True

    def paste(boot: dict) -> None:
        # The example bootstrap without Grantwall, then the emitted stanza pasted before the router.
        http_filters = _hcm(_one(boot["static_resources"]["listeners"], LISTENER, "listener"))["http_filters"]
        assert all(f["name"] != WASM_FILTER for f in http_filters)
        http_filters.insert(len(http_filters) - 1, filters[0])

    envoy = start_envoy(None, patch=paste)
    assert_example_policy_enforced(envoy, pki, client_cert, upstream_log)
    # The stanza's filter, not some other one, decided: its audit record is in the access log.
    calls = envoy.wait_access_log(lambda e: "get-sum" in (e.get("grantwall") or ""), count=2)
    assert sorted(json.loads(e["grantwall"])["decision"] for e in calls) == ["allow", "deny"]
