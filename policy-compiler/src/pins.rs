//! `grantwall pins`: the tool-definition pins of a saved `tools/list` response, printed as a
//! GrantwallToolPolicy to paste into a policy. The hash is the filter's own (`grantwall_core::pinning`).

use grantwall_core::pinning;
use grantwall_core::strict;

/// (tool name, sha256) for every tool in a `tools/list` response: a JSON-RPC response (application/json),
/// an SSE stream holding one, or a bare `{"tools": [...]}` result.
pub fn pins_from_response(bytes: &[u8]) -> Result<Vec<(String, String)>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "the response is not UTF-8".to_string())?;
    let text = text.trim_start_matches('\u{feff}').trim();
    let message = if text.starts_with('{') { text.to_string() } else { last_sse_result(text)? };
    let envelope = strict::members(&message).map_err(|e| format!("not a JSON object: {e}"))?;
    let result = match envelope.get("result") {
        Some(r) => strict::members(r.get()).map_err(|e| format!("result: {e}"))?,
        None => envelope,
    };
    let tools = result.get("tools").ok_or("no result.tools array in the response")?;
    let mut out = Vec::new();
    for (i, tool) in strict::elements(tools.get()).map_err(|e| format!("tools: {e}"))?.into_iter().enumerate() {
        let members = strict::members(tool.get()).map_err(|e| format!("tools[{i}]: {e}"))?;
        let name = members.get("name").and_then(strict::string).ok_or(format!("tools[{i}] has no string name"))?;
        let hash = pinning::tool_hash(tool.get()).map_err(|e| format!("tools[{i}]: {e}"))?;
        out.push((name.into_owned(), hash));
    }
    out.sort();
    Ok(out)
}

/// The data of the last SSE event holding a JSON-RPC result.
fn last_sse_result(text: &str) -> Result<String, String> {
    let mut splitter = grantwall_core::sse::SseSplitter::new();
    splitter.push(text.as_bytes());
    splitter.push(b"\n\n");
    let mut found = None;
    while let Some(raw) = splitter.next_event() {
        let event = grantwall_core::sse::parse_event(&raw).map_err(|_| "an SSE event is not UTF-8".to_string())?;
        if let Some(data) = event.data.filter(|d| d.contains("\"result\"")) {
            found = Some(data.into_owned());
        }
    }
    found.ok_or_else(|| "no JSON-RPC result in the SSE stream".to_string())
}

/// A GrantwallToolPolicy pinning these tools on `backend` (`NAMESPACE/NAME`).
pub fn render_policy(pins: &[(String, String)], backend: &str, policy_name: &str) -> String {
    let (ns, name) = backend.split_once('/').unwrap_or(("default", backend));
    let mut out = format!(
        "apiVersion: grantwall.io/v1alpha1\nkind: GrantwallToolPolicy\nmetadata:\n  name: {policy_name}\n  namespace: {ns}\nspec:\n  targetRefs:\n  - group: agentic.networking.x-k8s.io\n    kind: XBackend\n    name: {name}\n  pins:\n"
    );
    for (tool, sha) in pins {
        let tool = serde_json::to_string(tool).unwrap_or_default();
        out.push_str(&format!("  - tool: {tool}\n    sha256: {sha}\n"));
    }
    out
}
