//! `grantwall`: the command line only. Everything it does is in the library (`grantwall_policy_compiler`).

mod cmd;

use clap::{Args, Parser, Subcommand, ValueEnum};
use grantwall_core::config::{Config, DenialStyle, XfccTrust, DEFAULT_MAX_BODY_BYTES};
use grantwall_policy_compiler::compile::{self, Compiled, Options};
use grantwall_policy_compiler::diag::Diags;
use grantwall_policy_compiler::emit::{self, EmitOptions};
use grantwall_policy_compiler::input;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const AFTER_HELP: &str = "\
Exit status: 0 success, 1 invalid input (every problem is listed on stderr, one per line), 2 bad command line.

Documentation: docs/cli.md (commands and flags), docs/crd-reference.md (what each KAN field becomes).";

#[derive(Parser)]
#[command(
    name = "grantwall",
    version,
    about = "Compile kube-agentic-networking access policies into Grantwall's Proxy-Wasm filter config",
    long_about = "Compile kube-agentic-networking (KAN) access policies into Grantwall's Proxy-Wasm filter config.\n\n\
Reads XBackend (agentic.networking.x-k8s.io/v0alpha0) and XAccessPolicy (v1alpha1 and v0alpha0) objects, \
validates them exactly as the Kubernetes API server would with the upstream CRDs (schema, defaults and the \
CRDs' CEL rules) - except that unknown fields are refused instead of silently dropped - and writes the JSON \
config the filter loads. Gateway and HTTPRoute objects are read too (to choose the Gateway and to find path \
aliases); every other kind is skipped.",
    after_long_help = AFTER_HELP
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate KAN objects and compile them into the filter's JSON config.
    #[command(
        long_about = "Validate KAN objects and compile them into the filter's JSON config.\n\n\
Output is deterministic: the same objects give byte-identical output whatever the order of files and \
documents. On any error nothing is written and every error is printed, one per line, as\n  \
FILE doc N KIND NAMESPACE/NAME: FIELD.PATH: MESSAGE\nWarnings (e.g. policies beyond KAN's limit of 5 per \
target) are printed as 'warning: ...' and do not fail the run.",
        after_long_help = "Examples:\n  \
grantwall compile -f policies/ -o grantwall.json\n  \
grantwall compile -f backend.yaml -f policy.yaml --gateway istio-system/agents --pretty\n  \
kubectl get xbackends,xaccesspolicies -A -o yaml | grantwall compile -f - --check\n\n\
Exit status: 0 success, 1 invalid input, 2 bad command line."
    )]
    Compile(CompileArgs),
    /// Package the Wasm filter as an OCI image (for Istio's WasmPlugin), without a container daemon.
    #[command(
        long_about = cmd::package::LONG_ABOUT,
        after_long_help = cmd::package::AFTER_HELP
    )]
    Package(cmd::package::PackageArgs),
    /// Say whether the filter would allow a request, and which policy and rule decide (or why none does).
    #[command(
        long_about = cmd::explain::LONG_ABOUT,
        after_long_help = cmd::explain::AFTER_HELP
    )]
    Explain(Box<cmd::explain::ExplainArgs>),
    /// Print tool-definition pins (a GrantwallToolPolicy) for the tools in a saved tools/list response.
    #[command(
        long_about = "Print tool-definition pins for the tools in a saved tools/list response, as a \
GrantwallToolPolicy (grantwall.io/v1alpha1) to review and apply. A pin is the SHA-256 of the RFC 8785 (JCS) \
form of the tool's name, title, description, inputSchema, outputSchema and annotations.",
        after_long_help = "Example:\n  \
curl -s https://mcp.example/mcp -H 'content-type: application/json' -H 'accept: application/json, text/event-stream' \\\n    \
-d '{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}' > tools.json\n  \
grantwall pins --from-response tools.json --backend tools/mcp-server > pins.yaml"
    )]
    Pins(PinsArgs),
    /// Print the JSON Schema of the compiled config (the file the filter reads).
    #[command(
        long_about = "Print the JSON Schema (draft 2020-12) of the compiled config, generated from the \
Rust types the filter deserialises. The same schema is committed as docs/config-schema.json."
    )]
    Schema {
        /// Write the schema to FILE instead of stdout.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

#[derive(Args)]
struct PinsArgs {
    /// A saved tools/list response (JSON-RPC over application/json or text/event-stream), '-' for stdin.
    #[arg(long = "from-response", value_name = "FILE")]
    from_response: String,
    /// The XBackend the pins are for, as NAMESPACE/NAME.
    #[arg(long, value_name = "NAMESPACE/NAME", default_value = "default/mcp-server")]
    backend: String,
    /// metadata.name of the printed GrantwallToolPolicy.
    #[arg(long, value_name = "NAME", default_value = "tool-pins")]
    name: String,
}

#[derive(Args)]
struct CompileArgs {
    /// Input: a YAML file, a directory (searched recursively for *.yaml and *.yml, in sorted order) or '-'
    /// for stdin. Repeatable. Files may hold several documents ('---') and 'kind: List' objects.
    #[arg(short = 'f', long = "filename", value_name = "PATH", required = true)]
    files: Vec<String>,

    /// The Gateway this filter runs in, as NAMESPACE/NAME (or NAME in --namespace): only policies targeting it
    /// are compiled as gateway-level policies. Optional when the input names exactly one Gateway (defined
    /// or targeted by a policy); required when it names several.
    #[arg(long, value_name = "NAMESPACE/NAME")]
    gateway: Option<String>,

    /// SPIFFE trust domain for ServiceAccount sources: spiffe://TRUST_DOMAIN/ns/NS/sa/NAME.
    #[arg(long, value_name = "DOMAIN", default_value = "cluster.local")]
    trust_domain: String,

    /// Kubernetes cluster domain, for Service authorities (svc.ns.svc.DOMAIN) and Istio cluster names
    /// (outbound|PORT||svc.ns.svc.DOMAIN).
    #[arg(long, value_name = "DOMAIN", default_value = "cluster.local")]
    cluster_domain: String,

    /// Namespace of objects without metadata.namespace (as kubectl's -n).
    #[arg(
        short = 'n',
        long = "namespace",
        value_name = "NAMESPACE",
        default_value = "default"
    )]
    namespace: String,

    /// How the filter answers a denied MCP request.
    #[arg(long, value_enum, value_name = "STYLE", default_value_t = Denial::JsonrpcError)]
    denial: Denial,

    /// Largest request body (bytes) the filter buffers and inspects; larger requests are refused with 413.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: u32,

    /// Whether the x-forwarded-client-cert header may name the caller.
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = Xfcc::Never)]
    trust_xfcc: Xfcc,

    /// With --trust-xfcc from-peers: SPIFFE ID of a proxy (mTLS peer) allowed to set x-forwarded-client-cert.
    /// Repeatable.
    #[arg(long = "xfcc-peer", value_name = "SPIFFE_ID")]
    xfcc_peers: Vec<String>,

    /// Write the config to FILE (replaced atomically) instead of stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,

    /// Indent the JSON output.
    #[arg(long)]
    pretty: bool,

    /// Validate and compile, but write nothing; print a one-line summary to stderr.
    #[arg(long)]
    check: bool,

    /// What to write: the filter's JSON config, or that config wrapped for a host (YAML): an Istio WasmPlugin,
    /// an Envoy http_filters entry, or an Envoy ECDS resource file.
    #[arg(long, value_enum, value_name = "FORM", default_value_t = Emit::Config)]
    emit: Emit,

    /// With --emit wasmplugin (required): where Istio pulls the filter, e.g.
    /// oci://registry.example.com/grantwall:0.1.0 (also https://…/grantwall.wasm or file://…).
    #[arg(long, value_name = "URL")]
    image: Option<String>,

    /// With --emit wasmplugin: pin the image to this digest (spec.sha256): the manifest digest `grantwall
    /// package` prints, with or without "sha256:".
    #[arg(long, value_name = "DIGEST", conflicts_with = "package")]
    sha256: Option<String>,

    /// With --emit wasmplugin: pin the image to the digest of the OCI layout `grantwall package -o DIR` wrote.
    #[arg(long, value_name = "DIR")]
    package: Option<PathBuf>,

    /// With --emit wasmplugin, envoy or ecds: the name of the WasmPlugin, Envoy filter and ECDS resource
    /// [default: grantwall].
    #[arg(long, value_name = "NAME")]
    name: Option<String>,

    /// With --emit envoy or ecds: path of the Wasm module on the Envoy host (vm_config.code.local.filename)
    /// [default: /etc/envoy/grantwall.wasm].
    #[arg(long, value_name = "PATH")]
    wasm_file: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Emit {
    /// The filter's JSON config (what the filter's `configuration` holds).
    Config,
    /// An Istio extensions.istio.io/v1alpha1 WasmPlugin attached to the Gateway (--gateway).
    Wasmplugin,
    /// An envoy.filters.http.wasm entry for a listener's http_filters.
    Envoy,
    /// An ECDS resource file (DiscoveryResponse with a TypedExtensionConfig) for a path_config_source.
    Ecds,
}

#[derive(Clone, Copy, ValueEnum)]
enum Denial {
    /// HTTP 200 + JSON-RPC error {code: 403, message: "Access to this tool is forbidden."} (KAN-compatible).
    JsonrpcError,
    /// HTTP 200 + result.isError: true with the reason as text, so the model sees why.
    ToolError,
    /// HTTP 403 with the JSON-RPC error body (Python mcp 1.x ends the session on any 4xx).
    Http,
}

#[derive(Clone, Copy, ValueEnum)]
enum Xfcc {
    /// Ignore the header: any client can write it.
    Never,
    /// Believe it only from the mTLS peers given with --xfcc-peer (e.g. an ingress gateway).
    FromPeers,
    /// Always believe it: only if every path to the proxy crosses one that overwrites the header.
    Always,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Compile(args) => run_compile(args),
        Command::Package(args) => cmd::package::run(args),
        Command::Explain(args) => cmd::explain::run(*args),
        Command::Schema { output } => run_schema(output.as_deref()),
        Command::Pins(args) => run_pins(args),
    }
}

fn run_compile(args: CompileArgs) -> ExitCode {
    let emit_opts = match emit_options(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("grantwall: {e}");
            return ExitCode::from(2);
        }
    };
    let opts = Options {
        gateway: args.gateway,
        trust_domain: args.trust_domain,
        cluster_domain: args.cluster_domain,
        default_namespace: args.namespace,
        denial: match args.denial {
            Denial::JsonrpcError => DenialStyle::JsonrpcError,
            Denial::ToolError => DenialStyle::ToolError,
            Denial::Http => DenialStyle::Http,
        },
        max_body_bytes: args.max_body_bytes,
        xfcc_trust: match args.trust_xfcc {
            Xfcc::Never => XfccTrust::Never,
            Xfcc::FromPeers => XfccTrust::FromPeers,
            Xfcc::Always => XfccTrust::Always,
        },
        xfcc_peers: args.xfcc_peers,
    };
    let Some(compiled) = compile_reporting(&args.files, &opts) else {
        return ExitCode::from(1);
    };
    if args.check {
        eprintln!("grantwall: {}", compiled.summary);
        return ExitCode::SUCCESS;
    }
    let text = match args.emit {
        Emit::Config => render(&compiled.config, args.pretty),
        Emit::Wasmplugin => emit::wasm_plugin(&compiled.config, &emit_opts),
        Emit::Envoy => emit::envoy_filter(&compiled.config, &emit_opts),
        Emit::Ecds => emit::ecds_resource(&compiled.config, &emit_opts),
    };
    if args.emit == Emit::Wasmplugin && emit_opts.sha256.is_none() && text.is_ok() {
        eprintln!("warning: the WasmPlugin does not pin the image: add --sha256 DIGEST or --package DIR so Istio refuses any other image pushed under the same tag");
    }
    match text.and_then(|text| write_output(args.output.as_deref(), &text)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("grantwall: {e}");
            ExitCode::from(1)
        }
    }
}

/// The --emit flags, checked against each other: a flag the chosen form does not use is an error, not ignored.
fn emit_options(args: &CompileArgs) -> Result<EmitOptions, String> {
    let form = match args.emit {
        Emit::Config => "config",
        Emit::Wasmplugin => "wasmplugin",
        Emit::Envoy => "envoy",
        Emit::Ecds => "ecds",
    };
    let only = |flag: &str, set: bool, forms: &[Emit], which: &str| {
        if set && !forms.contains(&args.emit) {
            Err(format!("{flag} is used only with --emit {which}, not --emit {form}"))
        } else {
            Ok(())
        }
    };
    only("--image", args.image.is_some(), &[Emit::Wasmplugin], "wasmplugin")?;
    only("--sha256", args.sha256.is_some(), &[Emit::Wasmplugin], "wasmplugin")?;
    only("--package", args.package.is_some(), &[Emit::Wasmplugin], "wasmplugin")?;
    only("--name", args.name.is_some(), &[Emit::Wasmplugin, Emit::Envoy, Emit::Ecds], "wasmplugin, envoy or ecds")?;
    only("--wasm-file", args.wasm_file.is_some(), &[Emit::Envoy, Emit::Ecds], "envoy or ecds")?;
    only("--pretty", args.pretty, &[Emit::Config], "config (the other forms are YAML)")?;
    if let Some(image) = &args.image {
        emit::check_image(image)?;
    }
    let name = args.name.clone().unwrap_or_else(|| "grantwall".to_string());
    if !grantwall_policy_compiler::policy::is_dns_subdomain(&name) {
        return Err(format!("--name {name:?}: must be a lower-case DNS name (it names a Kubernetes object)"));
    }
    let sha256 = match (&args.sha256, &args.package) {
        (Some(s), _) => Some(emit::normalize_sha256(s)?),
        (None, Some(dir)) => {
            let digest = grantwall_policy_compiler::oci::layout_digest(dir, None).map_err(|e| format!("--package: {e}"))?;
            Some(emit::normalize_sha256(&digest)?)
        }
        (None, None) => None,
    };
    Ok(EmitOptions {
        name,
        image: args.image.clone(),
        sha256,
        wasm_file: args.wasm_file.clone().unwrap_or_else(|| emit::DEFAULT_WASM_FILE.to_string()),
    })
}

/// Reads and compiles `files`, printing warnings and (on failure) every error in compile's format.
pub(crate) fn compile_reporting(files: &[String], opts: &Options) -> Option<Compiled> {
    let mut read_diags = Diags::default();
    let sources = input::read_sources(files, &mut std::io::stdin(), &mut read_diags);
    let result = compile::compile(&sources, opts);
    let (compiled, mut diags) = match result {
        Ok(c) => (Some(c), Diags::default()),
        Err(d) => (None, d),
    };
    // Unreadable inputs come first: they explain missing objects later on.
    read_diags.errors.append(&mut diags.errors);
    read_diags.warnings.append(&mut diags.warnings);
    let mut stderr = std::io::stderr().lock();
    let warnings = compiled
        .as_ref()
        .map(|c| c.warnings.clone())
        .unwrap_or_default();
    for w in read_diags.warnings.iter().chain(&warnings) {
        let _ = writeln!(stderr, "warning: {w}");
    }
    match compiled {
        Some(c) if !read_diags.has_errors() => Some(c),
        _ => {
            for e in &read_diags.errors {
                let _ = writeln!(stderr, "{e}");
            }
            let n = read_diags.errors.len();
            let _ = writeln!(
                stderr,
                "grantwall: {n} error{}, nothing written",
                if n == 1 { "" } else { "s" }
            );
            None
        }
    }
}

pub(crate) fn render(config: &Config, pretty: bool) -> Result<String, String> {
    let text = if pretty {
        serde_json::to_string_pretty(config)
    } else {
        serde_json::to_string(config)
    };
    text.map(|t| t + "\n")
        .map_err(|e| format!("cannot serialise config: {e}"))
}

/// Writes to a temporary file beside the target and renames it, so a reader never sees half a config.
pub(crate) fn write_output(path: Option<&Path>, text: &str) -> Result<(), String> {
    let Some(path) = path.filter(|p| p.as_os_str() != "-") else {
        let mut out = std::io::stdout().lock();
        return out
            .write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .map_err(|e| format!("cannot write stdout: {e}"));
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.tmp{}", std::process::id()));
    let result = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn run_schema(output: Option<&Path>) -> ExitCode {
    let text = grantwall_policy_compiler::schema_json();
    match write_output(output, &text) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("grantwall: {e}");
            ExitCode::from(1)
        }
    }
}

fn run_pins(args: PinsArgs) -> ExitCode {
    let bytes = if args.from_response == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf).map(|_| buf)
    } else {
        std::fs::read(&args.from_response)
    };
    let bytes = match bytes {
        Ok(b) => b,
        Err(e) => {
            eprintln!("grantwall: cannot read {}: {e}", args.from_response);
            return ExitCode::from(1);
        }
    };
    match grantwall_policy_compiler::pins::pins_from_response(&bytes) {
        Ok(pins) => {
            print!("{}", grantwall_policy_compiler::pins::render_policy(&pins, &args.backend, &args.name));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("grantwall: {}: {e}", args.from_response);
            ExitCode::from(1)
        }
    }
}
