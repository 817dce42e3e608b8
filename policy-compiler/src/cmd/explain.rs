//! `grantwall explain`: flags and output; the decision is `grantwall_policy_compiler::explain`, which runs the
//! filter's own engine on the compiled config.

use clap::{ArgGroup, Args};
use grantwall_policy_compiler::compile::Options;
use grantwall_policy_compiler::explain::{self, ExplainRequest, TargetArg};
use std::path::PathBuf;
use std::process::ExitCode;

pub const LONG_ABOUT: &str = "\
Say whether the Grantwall filter would allow a request, and exactly why: the policy and rule that allowed it, or \
the level (Gateway or XBackend) whose default deny refused it, which rules name the caller and what they grant.\n\n\
The decision is the filter's own: the policies are compiled as `grantwall compile` does (or --config names a \
compiled config), loaded into the filter's engine, and the request body is built as JSON-RPC and read by the \
filter's parser. --json prints the audit record the filter would write (Envoy filter state \
wasm.grantwall_audit), for scripts.\n\n\
The caller is a SPIFFE ID (--as), or a Kubernetes ServiceAccount (--sa NAMESPACE/NAME, or --as \
system:serviceaccount:NAMESPACE:NAME) resolved with --trust-domain, or a token's caller (--as \
oidc://ISSUER-WITHOUT-https://#SUBJECT, e.g. an ephemeral GrantwallAgentIdentity) with its claims (--claims JSON). \
Without --as or --sa, the caller has no identity.";

pub const AFTER_HELP: &str = "\
Examples:
  grantwall explain -f policies/ --as spiffe://cluster.local/ns/agents/sa/bob --backend tools/mcp-server --mcp tools/call --tool get-sum
  grantwall explain -f policies/ --sa agents/alice --backend tools/mcp-server --mcp tools/call --tool echo --args '{\"message\":\"hi\"}' --json
  grantwall explain --config grantwall.json --sa agents/alice --backend tools/mcp-server --mcp resources/read --uri mem://docs/readme
  grantwall explain -f policies/ --sa agents/alice --backend tools/mcp-server --method GET

Exit status: 0 allowed, 3 denied, 1 invalid input (policies, config), 2 bad command line.";

#[derive(Args)]
#[command(group(ArgGroup::new("policies").args(["files", "config"]).required(true)))]
#[command(group(ArgGroup::new("caller").args(["as_", "sa"])))]
#[command(group(ArgGroup::new("target").args(["tool", "prompt", "uri"])))]
pub struct ExplainArgs {
    /// Policies, as for `grantwall compile -f`: a YAML file, a directory or '-'. Repeatable.
    #[arg(short = 'f', long = "filename", value_name = "PATH")]
    files: Vec<String>,

    /// A compiled config (the JSON `grantwall compile` writes) instead of -f: explain what is deployed.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// As for compile: the Gateway the filter runs in (NAMESPACE/NAME).
    #[arg(long, value_name = "NAMESPACE/NAME")]
    gateway: Option<String>,

    /// As for compile (also resolves --sa).
    #[arg(long, value_name = "DOMAIN", default_value = "cluster.local")]
    trust_domain: String,

    /// As for compile.
    #[arg(long, value_name = "DOMAIN", default_value = "cluster.local")]
    cluster_domain: String,

    /// As for compile: namespace of objects without metadata.namespace.
    #[arg(short = 'n', long = "namespace", value_name = "NAMESPACE", default_value = "default")]
    namespace: String,

    /// The caller: a SPIFFE ID (spiffe://cluster.local/ns/agents/sa/bob) or system:serviceaccount:NS:NAME.
    #[arg(long = "as", value_name = "IDENTITY")]
    as_: Option<String>,

    /// The caller as a Kubernetes ServiceAccount NAMESPACE/NAME (spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/NAME).
    #[arg(long, value_name = "NAMESPACE/NAME")]
    sa: Option<String>,

    /// The XBackend the request is for (NAMESPACE/NAME). Without it, the backend is found from --cluster and
    /// --authority as the filter does; with neither, only the Gateway's policies apply.
    #[arg(long, value_name = "NAMESPACE/NAME")]
    backend: Option<String>,

    /// The Envoy upstream cluster the route chose (e.g. outbound|8000||mcp-server.tools.svc.cluster.local).
    #[arg(long, value_name = "NAME")]
    cluster: Option<String>,

    /// The request's :authority (Host), e.g. mcp-server.tools:8000.
    #[arg(long, value_name = "HOST")]
    authority: Option<String>,

    /// HTTP method.
    #[arg(long, value_name = "METHOD", default_value = "POST")]
    method: String,

    /// Request path [default: the backend's MCP path, or /mcp].
    #[arg(long, value_name = "PATH")]
    path: Option<String>,

    /// The listener's port, for rules with `ports` conditions.
    #[arg(long, value_name = "PORT")]
    port: Option<u16>,

    /// A request header 'Name: value', for rules with header conditions, Mcp-Method/Mcp-Name/MCP-Protocol-Version
    /// agreement checks, or Mcp-Session-Id on DELETE. Repeatable.
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,

    /// The JSON-RPC method of the POST body (tools/call, initialize, resources/read, ...).
    #[arg(long, value_name = "METHOD")]
    mcp: Option<String>,

    /// An A2A operation on a GrantwallA2AAgent (--backend), by its canonical name: SendMessage, GetTask, ...
    /// (0.3 names normalise to these).
    #[arg(long, value_name = "OPERATION", conflicts_with_all = ["mcp", "tool", "prompt", "uri", "args"])]
    a2a: Option<String>,

    /// The `model` of an LLM request (POST to an OpenAI-compatible or Anthropic path, default
    /// /v1/chat/completions) to an upstream of a GrantwallModelPolicy, found by --cluster or --authority.
    #[arg(long, value_name = "MODEL", conflicts_with_all = ["mcp", "a2a", "tool", "prompt", "uri", "args", "backend"])]
    model: Option<String>,

    /// The tool of a tools/call (params.name).
    #[arg(long, value_name = "NAME")]
    tool: Option<String>,

    /// The prompt of a prompts/get (params.name).
    #[arg(long, value_name = "NAME")]
    prompt: Option<String>,

    /// The resource of resources/read, subscribe or unsubscribe (params.uri).
    #[arg(long, value_name = "URI")]
    uri: Option<String>,

    /// Tool arguments (params.arguments) as a JSON object. Read by the filter's parser (a duplicate key is
    /// refused as it would be on the wire); no policy reads arguments yet (argument constraints: issue #4).
    #[arg(long, value_name = "JSON")]
    args: Option<String>,

    /// The claims of the caller's bearer token as a JSON object ('{"groups":["admins"]}'), for CEL rules on
    /// jwt.claims; the signature is not checked (explain trusts you), and the identity source becomes jwt.
    #[arg(long, value_name = "JSON")]
    claims: Option<String>,

    /// Print the filter's audit record (JSON, one line) instead of the explanation.
    #[arg(long)]
    json: bool,
}

pub fn run(args: ExplainArgs) -> ExitCode {
    let request = match request(&args) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("grantwall: {e}");
            return ExitCode::from(2);
        }
    };
    let config_json = match &args.config {
        Some(path) => match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) => {
                eprintln!("grantwall: cannot read --config {}: {e}", path.display());
                return ExitCode::from(1);
            }
        },
        None => {
            let opts = Options {
                gateway: args.gateway.clone(),
                trust_domain: args.trust_domain.clone(),
                cluster_domain: args.cluster_domain.clone(),
                default_namespace: args.namespace.clone(),
                ..Options::default()
            };
            let Some(compiled) = crate::compile_reporting(&args.files, &opts) else {
                return ExitCode::from(1);
            };
            match crate::render(&compiled.config, false) {
                Ok(text) => text.into_bytes(),
                Err(e) => {
                    eprintln!("grantwall: {e}");
                    return ExitCode::from(1);
                }
            }
        }
    };
    match explain::explain(&config_json, &request) {
        Ok(x) => {
            if args.json {
                println!("{}", x.record_json);
            } else {
                print!("{}", x.human);
            }
            if x.allowed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            }
        }
        Err(e) => {
            eprintln!("grantwall: {e}");
            ExitCode::from(1)
        }
    }
}

fn request(args: &ExplainArgs) -> Result<ExplainRequest, String> {
    if args.config.is_some() && (args.gateway.is_some() || args.namespace != "default" || args.cluster_domain != "cluster.local") {
        return Err("--gateway, --namespace and --cluster-domain shape compilation; with --config the config is already compiled".into());
    }
    let principal = match (&args.as_, &args.sa) {
        (Some(id), _) if id.starts_with("spiffe://") || id.starts_with("oidc://") => Some(id.clone()),
        (Some(id), _) => match id.strip_prefix("system:serviceaccount:").and_then(|r| r.split_once(':')) {
            Some((ns, name)) => Some(sa_spiffe(&args.trust_domain, ns, name)?),
            None => {
                return Err(format!(
                    "--as {id:?}: expected a SPIFFE ID (spiffe://...), oidc://ISSUER#SUBJECT or system:serviceaccount:NAMESPACE:NAME"
                ))
            }
        },
        (None, Some(sa)) => match sa.split_once('/') {
            Some((ns, name)) => Some(sa_spiffe(&args.trust_domain, ns, name)?),
            None => return Err(format!("--sa {sa:?}: expected NAMESPACE/NAME")),
        },
        (None, None) => None,
    };
    let mut headers = Vec::new();
    for h in &args.headers {
        let Some((name, value)) = h.split_once(':') else {
            return Err(format!("--header {h:?}: expected 'Name: value'"));
        };
        let name = name.trim().to_ascii_lowercase();
        if name.is_empty() || name.starts_with(':') {
            return Err(format!("--header {h:?}: a header name is required (pseudo-headers: use --method, --path, --authority)"));
        }
        headers.push((name, value.trim().to_string()));
    }
    let target = match (&args.tool, &args.prompt, &args.uri) {
        (Some(t), _, _) => Some(TargetArg::Tool(t.clone())),
        (_, Some(p), _) => Some(TargetArg::Prompt(p.clone())),
        (_, _, Some(u)) => Some(TargetArg::Uri(u.clone())),
        _ => None,
    };
    Ok(ExplainRequest {
        principal,
        backend: args.backend.clone(),
        cluster: args.cluster.clone(),
        authority: args.authority.clone(),
        method: args.method.clone(),
        path: args.path.clone(),
        port: args.port,
        headers,
        mcp: args.mcp.clone(),
        a2a: args.a2a.clone(),
        model: args.model.clone(),
        target,
        args: args.args.clone(),
        claims: match &args.claims {
            Some(text) => Some(serde_json::from_str(text).map_err(|e| format!("--claims: not JSON ({e}); give the token's claims as a JSON object"))?),
            None => None,
        },
    })
}

fn sa_spiffe(trust_domain: &str, ns: &str, name: &str) -> Result<String, String> {
    let ok = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b".-".contains(&b));
    if !ok(ns) || !ok(name) {
        return Err(format!("ServiceAccount {ns}/{name}: namespace and name must be lower-case DNS names"));
    }
    Ok(format!("spiffe://{trust_domain}/ns/{ns}/sa/{name}"))
}
