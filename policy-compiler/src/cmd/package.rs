//! `grantwall package`: flags, output and messages; the image itself is `grantwall_policy_compiler::oci`.

use clap::{ArgGroup, Args, ValueEnum};
use grantwall_policy_compiler::oci::{self, PackageOptions, Variant};
use std::path::PathBuf;
use std::process::ExitCode;

pub const LONG_ABOUT: &str = "\
Package the Wasm filter as an OCI image that Istio's WasmPlugin pulls (url: oci://...), without Docker or any \
daemon. Writes an OCI image layout directory (-o: oci-layout, index.json, blobs/sha256/...) and/or the same \
layout as a tarball (--tar, an 'oci-archive'), then prints the image's manifest digest (sha256:...) on stdout: \
the value WasmPlugin.spec.sha256 pins.\n\n\
--variant oci (default) uses the Wasm image specification's media types: config \
application/vnd.module.wasm.config.v1+json and two layers, that runtime config and the module \
(application/vnd.module.wasm.content.layer.v1+wasm). --variant compat is one \
application/vnd.oci.image.layer.v1.tar+gzip layer holding plugin.wasm, for registries that refuse custom media \
types. Istio reads both.\n\n\
The output is deterministic (sorted JSON, no timestamps): the same module gives the same digest.";

pub const AFTER_HELP: &str = "\
Examples:
  grantwall package -o dist/oci
  grantwall package --wasm dist/grantwall.wasm -o dist/oci --tar dist/grantwall-oci.tar --tag 0.1.0
  skopeo copy --preserve-digests oci:dist/oci:0.1.0 docker://registry.example.com/grantwall:0.1.0
  grantwall compile -f policies/ --emit wasmplugin --image oci://registry.example.com/grantwall:0.1.0 --package dist/oci

Exit status: 0 success, 1 unreadable module or unwritable output, 2 bad command line.";

#[derive(Args)]
#[command(group(ArgGroup::new("destination").args(["output", "tar"]).required(true).multiple(true)))]
pub struct PackageArgs {
    /// The Wasm filter to package (as `make build` writes it).
    #[arg(long, value_name = "FILE", default_value = "dist/grantwall.wasm")]
    wasm: PathBuf,

    /// Write the OCI image layout to directory DIR (an earlier layout there is replaced).
    #[arg(short = 'o', long = "output", value_name = "DIR")]
    output: Option<PathBuf>,

    /// Write the layout as an OCI archive tarball FILE (skopeo: oci-archive:FILE).
    #[arg(long, value_name = "FILE")]
    tar: Option<PathBuf>,

    /// Image shape: the Wasm spec's media types, or the docker-compatible tar+gzip layer.
    #[arg(long, value_enum, value_name = "VARIANT", default_value_t = VariantArg::Oci)]
    variant: VariantArg,

    /// The tag recorded in index.json (org.opencontainers.image.ref.name).
    #[arg(long, value_name = "TAG", default_value = env!("CARGO_PKG_VERSION"))]
    tag: String,
}

#[derive(Clone, Copy, ValueEnum)]
enum VariantArg {
    /// application/vnd.module.wasm.config.v1+json config, application/vnd.module.wasm.content.layer.v1+wasm layer.
    Oci,
    /// One application/vnd.oci.image.layer.v1.tar+gzip layer holding plugin.wasm.
    Compat,
}

pub fn run(args: PackageArgs) -> ExitCode {
    match package(&args) {
        Ok(digest) => {
            println!("{digest}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("grantwall: {e}");
            ExitCode::from(1)
        }
    }
}

fn package(args: &PackageArgs) -> Result<String, String> {
    let wasm = std::fs::read(&args.wasm)
        .map_err(|e| format!("cannot read {}: {e} (build it with `make build`, or name the module with --wasm)", args.wasm.display()))?;
    oci::check_wasm(&wasm).map_err(|e| format!("{} {e}", args.wasm.display()))?;
    let variant = match args.variant {
        VariantArg::Oci => Variant::Oci,
        VariantArg::Compat => Variant::Compat,
    };
    let opts = PackageOptions { variant, tag: args.tag.clone(), version: env!("CARGO_PKG_VERSION").to_string() };
    let layout = oci::build(&wasm, &opts)?;
    let mut wrote = Vec::new();
    if let Some(dir) = &args.output {
        layout.write_dir(dir)?;
        wrote.push(format!("{} (skopeo: oci:{}:{})", dir.display(), dir.display(), args.tag));
    }
    if let Some(tar) = &args.tar {
        let bytes = layout.to_tar()?;
        write_atomically(tar, &bytes)?;
        wrote.push(format!("{} (skopeo: oci-archive:{}:{})", tar.display(), tar.display(), args.tag));
    }
    eprintln!(
        "grantwall: packaged {} ({} bytes), {} variant: {}; manifest digest {} (WasmPlugin spec.sha256: {})",
        args.wasm.display(),
        wasm.len(),
        variant.as_str(),
        wrote.join(", "),
        layout.manifest_digest,
        layout.manifest_digest.trim_start_matches("sha256:"),
    );
    Ok(layout.manifest_digest)
}

fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> Result<(), String> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp{}", std::process::id()));
    let result = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(|e| format!("cannot write {}: {e}", path.display()))
}
