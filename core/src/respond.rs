//! Replies the filter sends instead of forwarding: denials in the configured shape and protocol errors.
//!
//! A per-tool denial must not look like a transport failure: MCP SDKs (Python `mcp` 1.x) tear the whole
//! session down on any HTTP 4xx, so by default a denial is HTTP 200 with a JSON-RPC error carrying the
//! request's own id — KAN's shape. Messages without an id (notifications, GET, DELETE) have nothing to answer
//! in JSON-RPC, so they get an HTTP status.

use crate::config::DenialStyle;

/// KAN's denial message, kept verbatim for compatibility with clients and tests written against KAN.
pub const FORBIDDEN_MESSAGE: &str = "Access to this tool is forbidden.";

/// JSON-RPC code KAN uses for a denial.
pub const FORBIDDEN_CODE: i32 = 403;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u32,
    pub body: String,
}

/// The reply for a request authorization refused.
///
/// `id` is the raw JSON id of the request (echoed with its type), `op_name` the MCP method.
pub fn forbidden(style: DenialStyle, id: Option<&str>, op_name: Option<&str>, target: Option<&str>, reason: &str) -> Reply {
    match (style, id) {
        (DenialStyle::ToolError, Some(id)) if op_name == Some("tools/call") => {
            let text = format!(
                "Grantwall denied this call to tool {}: {reason}.",
                serde_json::to_string(target.unwrap_or("")).unwrap_or_default()
            );
            Reply {
                status: 200,
                body: format!(
                    r#"{{"jsonrpc":"2.0","id":{id},"result":{{"content":[{{"type":"text","text":{}}}],"isError":true}}}}"#,
                    json_string(&text)
                ),
            }
        }
        (DenialStyle::Http, _) | (_, None) => error_reply(403, id, FORBIDDEN_CODE, FORBIDDEN_MESSAGE, Some(reason)),
        (_, Some(_)) => error_reply(200, id, FORBIDDEN_CODE, FORBIDDEN_MESSAGE, Some(reason)),
    }
}

/// A JSON-RPC error reply with an HTTP status, for malformed or unacceptable requests.
pub fn error_reply(status: u32, id: Option<&str>, code: i32, message: &str, reason: Option<&str>) -> Reply {
    let id = id.unwrap_or("null");
    let data = match reason {
        Some(r) => format!(r#","data":{{"reason":{}}}"#, json_string(r)),
        None => String::new(),
    };
    Reply {
        status,
        body: format!(
            r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":{code},"message":{}{data}}}}}"#,
            json_string(message)
        ),
    }
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}
