//! The compiled form of a CEL expression, as stored in the config (`rules[].cel`).
//!
//! One JSON object per node, named by its operator: `{"eq": [{"var": "request.mcp.tool_name"}, {"string": "get-sum"}]}`.
//! The compiler has already resolved everything that can be resolved before a request exists: variable
//! names, header names (`request.headers['x']` becomes `{"header": "x"}`), `timestamp('…')` literals and
//! comprehension variables (`{"local": 0}` is the innermost one), so the filter never parses CEL text.

use serde::{Deserialize, Serialize};

/// A variable a CEL rule can read. Names are KAN's (`request.*`) plus Grantwall's extensions.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Var {
    /// `:path` as received, query included.
    #[serde(rename = "request.path")]
    RequestPath,
    /// `:path` without query and fragment.
    #[serde(rename = "request.url_path")]
    RequestUrlPath,
    #[serde(rename = "request.method")]
    RequestMethod,
    /// `:authority` as received.
    #[serde(rename = "request.host")]
    RequestHost,
    /// When the filter decided (host clock), UTC.
    #[serde(rename = "request.time")]
    RequestTime,
    /// `params.name` of a `tools/call`; absent for every other request.
    #[serde(rename = "request.mcp.tool_name")]
    McpToolName,
    /// JSON-RPC method of an MCP request or notification; absent otherwise.
    #[serde(rename = "request.mcp.method")]
    McpMethod,
    /// `params.arguments` of an MCP request (a map for `tools/call`); absent when the request has none.
    #[serde(rename = "request.mcp.arguments")]
    McpArguments,
    /// The caller's SPIFFE ID; absent without identity.
    #[serde(rename = "source.spiffe_id")]
    SourceSpiffeId,
    /// `NS` of a `spiffe://TD/ns/NS/sa/NAME` caller; absent for other IDs.
    #[serde(rename = "source.namespace")]
    SourceNamespace,
    /// `NAME` of a `spiffe://TD/ns/NS/sa/NAME` caller; absent for other IDs.
    #[serde(rename = "source.service_account")]
    SourceServiceAccount,
    /// JWT claims: reserved for token sources (issue #5); an empty map until then.
    #[serde(rename = "jwt.claims")]
    JwtClaims,
}

impl Var {
    pub const ALL: [Var; 12] = [
        Var::RequestPath,
        Var::RequestUrlPath,
        Var::RequestMethod,
        Var::RequestHost,
        Var::RequestTime,
        Var::McpToolName,
        Var::McpMethod,
        Var::McpArguments,
        Var::SourceSpiffeId,
        Var::SourceNamespace,
        Var::SourceServiceAccount,
        Var::JwtClaims,
    ];

    /// The CEL name (`request.mcp.tool_name`).
    pub fn name(self) -> &'static str {
        match self {
            Var::RequestPath => "request.path",
            Var::RequestUrlPath => "request.url_path",
            Var::RequestMethod => "request.method",
            Var::RequestHost => "request.host",
            Var::RequestTime => "request.time",
            Var::McpToolName => "request.mcp.tool_name",
            Var::McpMethod => "request.mcp.method",
            Var::McpArguments => "request.mcp.arguments",
            Var::SourceSpiffeId => "source.spiffe_id",
            Var::SourceNamespace => "source.namespace",
            Var::SourceServiceAccount => "source.service_account",
            Var::JwtClaims => "jwt.claims",
        }
    }

    pub fn from_name(name: &str) -> Option<Var> {
        Var::ALL.into_iter().find(|v| v.name() == name)
    }
}

/// Functions and methods (`s.startsWith(p)` is `{"call": ["startsWith", [s, p]]}`: receiver first).
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Func {
    StartsWith,
    EndsWith,
    Contains,
    /// Characters of a string, elements of a list, entries of a map.
    Size,
    LowerAscii,
    UpperAscii,
    GetFullYear,
    /// 0-11, as in CEL.
    GetMonth,
    /// Day of month, 1-31.
    GetDate,
    /// Day of month, 0-30.
    GetDayOfMonth,
    /// 0 = Sunday.
    GetDayOfWeek,
    /// 0-365.
    GetDayOfYear,
    GetHours,
    GetMinutes,
    GetSeconds,
    GetMilliseconds,
}

impl Func {
    pub const ALL: [Func; 16] = [
        Func::StartsWith,
        Func::EndsWith,
        Func::Contains,
        Func::Size,
        Func::LowerAscii,
        Func::UpperAscii,
        Func::GetFullYear,
        Func::GetMonth,
        Func::GetDate,
        Func::GetDayOfMonth,
        Func::GetDayOfWeek,
        Func::GetDayOfYear,
        Func::GetHours,
        Func::GetMinutes,
        Func::GetSeconds,
        Func::GetMilliseconds,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Func::StartsWith => "startsWith",
            Func::EndsWith => "endsWith",
            Func::Contains => "contains",
            Func::Size => "size",
            Func::LowerAscii => "lowerAscii",
            Func::UpperAscii => "upperAscii",
            Func::GetFullYear => "getFullYear",
            Func::GetMonth => "getMonth",
            Func::GetDate => "getDate",
            Func::GetDayOfMonth => "getDayOfMonth",
            Func::GetDayOfWeek => "getDayOfWeek",
            Func::GetDayOfYear => "getDayOfYear",
            Func::GetHours => "getHours",
            Func::GetMinutes => "getMinutes",
            Func::GetSeconds => "getSeconds",
            Func::GetMilliseconds => "getMilliseconds",
        }
    }

    pub fn from_name(name: &str) -> Option<Func> {
        Func::ALL.into_iter().find(|f| f.name() == name)
    }

    /// Number of arguments including the receiver.
    pub fn arity(self) -> usize {
        match self {
            Func::StartsWith | Func::EndsWith | Func::Contains => 2,
            _ => 1,
        }
    }
}

/// A point in time, UTC.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timestamp {
    /// Seconds since 1970-01-01T00:00:00Z.
    pub seconds: i64,
    /// 0..1e9.
    #[serde(default)]
    pub nanos: u32,
}

/// One node of a compiled CEL expression (see docs/cel.md).
// Deserialised by hand (decode.rs), not derived: the derive costs ~30 KiB of Wasm.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Expr {
    Null,
    Bool(bool),
    Int(i64),
    Uint(u64),
    /// Finite (checked at load).
    Double(f64),
    String(String),
    Timestamp(Timestamp),
    List(Vec<Expr>),
    Var(Var),
    /// A comprehension variable: 0 is the innermost `all`/`exists`/`existsOne` variable.
    Local(u32),
    /// `request.headers['name']` (lower-case name); no such key when the header is absent.
    Header(String),
    /// `has(request.headers.name)` / `'name' in request.headers`.
    HasHeader(String),
    /// `e.field` on a map: the value at key `field`.
    Select(Box<Expr>, String),
    /// `has(e.field)`.
    Has(Box<Expr>, String),
    /// `e[key]` on a map or `e[i]` on a list.
    Index(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Neg(Box<Expr>),
    /// CEL `&&`: false wins over an error.
    And(Vec<Expr>),
    /// CEL `||`: true wins over an error.
    Or(Vec<Expr>),
    /// `c ? a : b`.
    Cond(Box<Expr>, Box<Expr>, Box<Expr>),
    Eq(Box<Expr>, Box<Expr>),
    Ne(Box<Expr>, Box<Expr>),
    Lt(Box<Expr>, Box<Expr>),
    Le(Box<Expr>, Box<Expr>),
    Gt(Box<Expr>, Box<Expr>),
    Ge(Box<Expr>, Box<Expr>),
    Add(Box<Expr>, Box<Expr>),
    Sub(Box<Expr>, Box<Expr>),
    Mul(Box<Expr>, Box<Expr>),
    Div(Box<Expr>, Box<Expr>),
    Rem(Box<Expr>, Box<Expr>),
    /// `e in list` / `key in map`.
    In(Box<Expr>, Box<Expr>),
    Call(Func, Vec<Expr>),
    /// `e.matches('re')`: RE2 syntax, unanchored (CEL), compiled with regex-lite at load.
    Matches(Box<Expr>, String),
    /// `range.all(x, body)`: `body` sees the element as `{"local": 0}`.
    All(Box<Expr>, Box<Expr>),
    Exists(Box<Expr>, Box<Expr>),
    ExistsOne(Box<Expr>, Box<Expr>),
}

// Doubles in a loaded expression are finite (Program::new refuses NaN and infinities), so equality is total.
impl Eq for Expr {}

impl Expr {
    /// Child nodes, in evaluation order.
    pub fn children(&self) -> Vec<&Expr> {
        match self {
            Expr::Null
            | Expr::Bool(_)
            | Expr::Int(_)
            | Expr::Uint(_)
            | Expr::Double(_)
            | Expr::String(_)
            | Expr::Timestamp(_)
            | Expr::Var(_)
            | Expr::Local(_)
            | Expr::Header(_)
            | Expr::HasHeader(_) => Vec::new(),
            Expr::List(items) | Expr::And(items) | Expr::Or(items) | Expr::Call(_, items) => items.iter().collect(),
            Expr::Select(e, _) | Expr::Has(e, _) | Expr::Not(e) | Expr::Neg(e) | Expr::Matches(e, _) => vec![e],
            Expr::Cond(a, b, c) => vec![a, b, c],
            Expr::Index(a, b)
            | Expr::Eq(a, b)
            | Expr::Ne(a, b)
            | Expr::Lt(a, b)
            | Expr::Le(a, b)
            | Expr::Gt(a, b)
            | Expr::Ge(a, b)
            | Expr::Add(a, b)
            | Expr::Sub(a, b)
            | Expr::Mul(a, b)
            | Expr::Div(a, b)
            | Expr::Rem(a, b)
            | Expr::In(a, b)
            | Expr::All(a, b)
            | Expr::Exists(a, b)
            | Expr::ExistsOne(a, b) => vec![a, b],
        }
    }

    /// Whether the expression reads `var` anywhere.
    pub fn uses(&self, var: Var) -> bool {
        matches!(self, Expr::Var(v) if *v == var) || self.children().into_iter().any(|c| c.uses(var))
    }
}
