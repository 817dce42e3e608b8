//! What an HTTP request means in MCP terms: the operation authorization looks at.
//!
//! A POST body becomes one [`McpOp`] through the strict JSON-RPC parser; a GET on the MCP path is the
//! server-to-client stream and a DELETE with `Mcp-Session-Id` ends a session (both base protocol). The
//! 2026-07-28 routing headers (`Mcp-Method`, `Mcp-Name`) must agree with the body: a gateway that routed or
//! authorized on headers while the server executes the body would be a confused deputy.

use crate::config::McpMethod;
use crate::jsonrpc::{Message, MessageKind};

/// First MCP revision whose requests must carry `Mcp-Method` / `Mcp-Name` headers.
pub const HEADER_ROUTING_REVISION: &str = "2026-07-28";

/// JSON-RPC error code for a header/body disagreement (2026-07-28).
pub const HEADER_MISMATCH_CODE: i32 = -32020;

/// The MCP operation a request performs, as the decision engine sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct McpOp<'a> {
    /// JSON-RPC method, or `GET` / `DELETE` for the stream and session-end requests.
    pub name: &'a str,
    /// One of KAN's base-protocol operations (granted by `MATCH_BASE_PROTOCOL_METHODS`).
    pub base: bool,
    /// The functional method a grant can name, if this is one.
    pub method: Option<McpMethod>,
    /// Tool/prompt name or resource URI for targeted methods.
    pub target: Option<&'a str>,
    /// `params.arguments`, raw JSON, when the parser was asked to keep it (CEL rules that read arguments).
    pub arguments: Option<&'a str>,
}

impl<'a> McpOp<'a> {
    /// The operation a parsed JSON-RPC message performs.
    pub fn from_message(msg: &'a Message<'a>) -> McpOp<'a> {
        if msg.kind == MessageKind::Response {
            // A client's answer to a server request: part of the session's plumbing.
            return McpOp { name: "response", base: true, method: None, target: None, arguments: None };
        }
        let name = msg.method.as_ref();
        McpOp {
            name,
            base: is_base_method(name),
            method: McpMethod::from_name(name),
            target: msg.target.as_deref(),
            arguments: msg.arguments,
        }
    }

    /// GET on the MCP path: the server-to-client SSE stream (pre-2026-07-28).
    pub const STREAM: McpOp<'static> = McpOp { name: "GET", base: true, method: None, target: None, arguments: None };

    /// DELETE with `Mcp-Session-Id`: the client ends its session.
    pub const SESSION_END: McpOp<'static> =
        McpOp { name: "DELETE", base: true, method: None, target: None, arguments: None };
}

/// KAN's base-protocol methods, plus `server/discover` (2026-07-28's replacement for `initialize`).
pub fn is_base_method(method: &str) -> bool {
    matches!(method, "initialize" | "ping" | "tools/list" | "server/discover")
        || method.starts_with("completion/")
        || method.starts_with("logging/")
        || method.starts_with("notifications/")
}

/// The 2026-07-28 routing headers a request carried.
#[derive(Debug, Clone, Copy, Default)]
pub struct RoutingHeaders<'a> {
    pub protocol_version: Option<&'a str>,
    pub mcp_method: Option<&'a str>,
    pub mcp_name: Option<&'a str>,
}

/// Why the routing headers disagree with the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderMismatch {
    MethodMissing,
    MethodDiffers,
    NameMissing,
    NameDiffers,
    /// `Mcp-Name` on a message that has no name to agree with.
    NameUnexpected,
}

impl HeaderMismatch {
    pub fn message(self) -> &'static str {
        match self {
            HeaderMismatch::MethodMissing => "Mcp-Method header is required for this protocol version",
            HeaderMismatch::MethodDiffers => "Mcp-Method header does not match the request body",
            HeaderMismatch::NameMissing => "Mcp-Name header is required for this method and protocol version",
            HeaderMismatch::NameDiffers => "Mcp-Name header does not match the request body",
            HeaderMismatch::NameUnexpected => "Mcp-Name header given for a method that has no name",
        }
    }
}

/// Check that `Mcp-Method` / `Mcp-Name` agree with the body. Present headers must always agree; from
/// [`HEADER_ROUTING_REVISION`] on they are also required.
pub fn check_routing_headers(msg: &Message<'_>, headers: &RoutingHeaders<'_>) -> Result<(), HeaderMismatch> {
    let required = headers.protocol_version.is_some_and(|v| v >= HEADER_ROUTING_REVISION)
        && msg.kind != MessageKind::Response;
    match headers.mcp_method {
        Some(m) if msg.kind == MessageKind::Response || m != msg.method => return Err(HeaderMismatch::MethodDiffers),
        None if required => return Err(HeaderMismatch::MethodMissing),
        _ => {}
    }
    let named = matches!(
        msg.method.as_ref(),
        "tools/call" | "prompts/get" | "resources/read" | "resources/subscribe" | "resources/unsubscribe"
    );
    match (headers.mcp_name, msg.target.as_deref()) {
        (Some(h), Some(t)) if named => {
            if h != t {
                return Err(HeaderMismatch::NameDiffers);
            }
        }
        (Some(_), _) => return Err(HeaderMismatch::NameUnexpected),
        (None, _) if named && required => return Err(HeaderMismatch::NameMissing),
        (None, _) => {}
    }
    Ok(())
}
