//! `grantwall package`: the filter as an OCI image that Istio's `WasmPlugin` (`url: oci://…`) pulls, built
//! without a container daemon.
//!
//! Two shapes of the Wasm image specification (solo-io/wasm `spec/`), both accepted by Istio's image fetcher:
//!
//! - `oci` (default): the Wasm-specific media types. The manifest's config is the runtime config
//!   (`application/vnd.module.wasm.config.v1+json`) and it has exactly two layers: that runtime config again,
//!   then the raw module (`application/vnd.module.wasm.content.layer.v1+wasm`). Two layers because Istio's
//!   fetcher recognises this variant only by "exactly two layers, one of them the Wasm layer"; tools that read
//!   the manifest config (ORAS-style) find the same bytes there.
//! - `compat`: one `application/vnd.oci.image.layer.v1.tar+gzip` layer holding `plugin.wasm`, a plain OCI image
//!   config and the annotation `module.wasm.image/variant: compat`, for registries that refuse custom media
//!   types.
//!
//! Output is deterministic: JSON with sorted keys and no whitespace, no timestamps (tar entries have mtime 0,
//! gzip has no mtime or name), so the same module always gives the same manifest digest. That digest is what
//! `WasmPlugin.spec.sha256` pins.

use flate2::{Compression, GzBuilder};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.module.wasm.config.v1+json";
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/vnd.module.wasm.content.layer.v1+wasm";
pub const IMAGE_CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
pub const TAR_GZIP_LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Annotation that marks a `compat` image whose layer has the OCI tar+gzip media type.
pub const COMPAT_ANNOTATION: &str = "module.wasm.image/variant";
const REF_NAME: &str = "org.opencontainers.image.ref.name";
const TITLE: &str = "org.opencontainers.image.title";

/// The Proxy-Wasm root id the filter registers (the filter ignores it; Envoy and Istio pass one).
pub const ROOT_ID: &str = "grantwall";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    Oci,
    Compat,
}

impl Variant {
    pub fn as_str(self) -> &'static str {
        match self {
            Variant::Oci => "oci",
            Variant::Compat => "compat",
        }
    }
}

#[derive(Debug, Clone)]
pub struct PackageOptions {
    pub variant: Variant,
    /// `org.opencontainers.image.ref.name` of the manifest in `index.json` (the tag skopeo and others use).
    pub tag: String,
    /// `org.opencontainers.image.version` on the manifest.
    pub version: String,
}

/// An OCI image layout in memory: every file of the directory, by relative path.
#[derive(Debug, Clone)]
pub struct Layout {
    /// `oci-layout`, `index.json` and `blobs/sha256/<hex>`, sorted by path.
    pub files: BTreeMap<String, Vec<u8>>,
    /// `sha256:<hex>` of the manifest: what `WasmPlugin.spec.sha256` (the hex part) pins.
    pub manifest_digest: String,
}

/// A content-addressed blob and its OCI descriptor.
struct Blob {
    bytes: Vec<u8>,
    digest: String,
}

impl Blob {
    fn new(bytes: Vec<u8>) -> Blob {
        let digest = sha256_digest(&bytes);
        Blob { bytes, digest }
    }

    fn descriptor(&self, media_type: &str, title: Option<&str>) -> Value {
        let mut d = json!({"mediaType": media_type, "digest": self.digest, "size": self.bytes.len()});
        if let Some(t) = title {
            d["annotations"] = json!({ TITLE: t });
        }
        d
    }
}

/// `sha256:<lower-case hex>`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compact JSON with sorted keys (serde_json's map is ordered by key): one byte sequence per value.
fn canonical(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

/// Checks the Wasm header, so a wrong `--wasm` path fails here rather than in every proxy that pulls the image.
pub fn check_wasm(bytes: &[u8]) -> Result<(), String> {
    match bytes.get(..8) {
        Some([0x00, b'a', b's', b'm', 1, 0, 0, 0]) => Ok(()),
        Some([0x00, b'a', b's', b'm', ..]) => Err("is a WebAssembly component or unknown version, not a core module (version 1)".into()),
        _ => Err("is not a WebAssembly module (no \\0asm header): pass the filter built by `make build` (dist/grantwall.wasm)".into()),
    }
}

/// Builds the image layout for a Wasm module.
pub fn build(wasm: &[u8], opts: &PackageOptions) -> Result<Layout, String> {
    check_wasm(wasm)?;
    if opts.tag.is_empty() || !opts.tag.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
        return Err(format!("--tag {:?}: a tag is letters, digits, '.', '_' and '-'", opts.tag));
    }
    let mut blobs: Vec<Blob> = Vec::new();
    let mut annotations = json!({
        TITLE: "grantwall",
        "org.opencontainers.image.description": "Grantwall: KAN access policies for MCP agent traffic, as a Proxy-Wasm HTTP filter",
        "org.opencontainers.image.version": opts.version,
    });
    let (config, layers) = match opts.variant {
        Variant::Oci => {
            // The runtime config of the spec's Envoy flavour: which host and ABI, and the root id to use.
            let runtime = Blob::new(canonical(&json!({
                "type": "envoy_proxy",
                "abiVersions": ["proxy_abi_version_0_2_1"],
                "config": {"root_ids": [ROOT_ID]},
            })));
            let module = Blob::new(wasm.to_vec());
            let config = runtime.descriptor(WASM_CONFIG_MEDIA_TYPE, None);
            let layers = vec![
                runtime.descriptor(WASM_CONFIG_MEDIA_TYPE, Some("runtime-config.json")),
                module.descriptor(WASM_LAYER_MEDIA_TYPE, Some("plugin.wasm")),
            ];
            blobs.push(runtime);
            blobs.push(module);
            (config, layers)
        }
        Variant::Compat => {
            let tar = plugin_tar(wasm)?;
            let diff_id = sha256_digest(&tar);
            let layer = Blob::new(gzip(&tar)?);
            // A plain OCI image config; architecture/os use Go's names for WASI preview 1.
            let image_config = Blob::new(canonical(&json!({
                "architecture": "wasm",
                "os": "wasip1",
                "config": {},
                "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            })));
            let config = image_config.descriptor(IMAGE_CONFIG_MEDIA_TYPE, None);
            let layers = vec![layer.descriptor(TAR_GZIP_LAYER_MEDIA_TYPE, None)];
            annotations[COMPAT_ANNOTATION] = json!("compat");
            blobs.push(image_config);
            blobs.push(layer);
            (config, layers)
        }
    };
    let manifest = Blob::new(canonical(&json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": config,
        "layers": layers,
        "annotations": annotations,
    })));
    let index = canonical(&json!({
        "schemaVersion": 2,
        "mediaType": INDEX_MEDIA_TYPE,
        "manifests": [{
            "mediaType": MANIFEST_MEDIA_TYPE,
            "digest": manifest.digest,
            "size": manifest.bytes.len(),
            "annotations": { REF_NAME: opts.tag },
        }],
    }));
    let manifest_digest = manifest.digest.clone();
    blobs.push(manifest);
    let mut files = BTreeMap::new();
    files.insert("oci-layout".to_string(), canonical(&json!({"imageLayoutVersion": "1.0.0"})));
    files.insert("index.json".to_string(), index);
    for blob in blobs {
        let hex = blob.digest.trim_start_matches("sha256:");
        files.insert(format!("blobs/sha256/{hex}"), blob.bytes);
    }
    Ok(Layout { files, manifest_digest })
}

fn tar_header(path: &str, size: usize, mode: u32, kind: tar::EntryType) -> Result<tar::Header, String> {
    let mut h = tar::Header::new_ustar();
    h.set_path(path).map_err(|e| format!("tar entry {path}: {e}"))?;
    h.set_size(size as u64);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_entry_type(kind);
    h.set_cksum();
    Ok(h)
}

/// The compat layer's content: a tar with `plugin.wasm` only.
fn plugin_tar(wasm: &[u8]) -> Result<Vec<u8>, String> {
    let mut b = tar::Builder::new(Vec::new());
    let h = tar_header("plugin.wasm", wasm.len(), 0o644, tar::EntryType::Regular)?;
    b.append(&h, wasm).map_err(|e| format!("tar: {e}"))?;
    b.into_inner().map_err(|e| format!("tar: {e}"))
}

fn gzip(bytes: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::Write;
    // No file name and mtime 0 in the gzip header: the bytes depend on the content only.
    let mut enc = GzBuilder::new().mtime(0).write(Vec::new(), Compression::best());
    enc.write_all(bytes).map_err(|e| format!("gzip: {e}"))?;
    enc.finish().map_err(|e| format!("gzip: {e}"))
}

impl Layout {
    /// The layout as an `oci-archive` tarball (the directory's files at the tar root), deterministic.
    pub fn to_tar(&self) -> Result<Vec<u8>, String> {
        let mut b = tar::Builder::new(Vec::new());
        for dir in ["blobs/", "blobs/sha256/"] {
            let h = tar_header(dir, 0, 0o755, tar::EntryType::Directory)?;
            b.append(&h, std::io::empty()).map_err(|e| format!("tar: {e}"))?;
        }
        for (path, bytes) in &self.files {
            let h = tar_header(path, bytes.len(), 0o644, tar::EntryType::Regular)?;
            b.append(&h, bytes.as_slice()).map_err(|e| format!("tar: {e}"))?;
        }
        b.into_inner().map_err(|e| format!("tar: {e}"))
    }

    /// Writes the layout as directory `dir`, replacing an earlier layout there. The new layout is built beside
    /// it and renamed into place, so a reader never sees a half-written one.
    pub fn write_dir(&self, dir: &Path) -> Result<(), String> {
        let existing = match std::fs::read_dir(dir) {
            Ok(mut entries) => {
                let empty = entries.next().is_none();
                if !empty && !dir.join("oci-layout").is_file() {
                    return Err(format!(
                        "{} exists and is not an OCI image layout (no oci-layout file): choose another -o, or remove it",
                        dir.display()
                    ));
                }
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(format!("cannot read {}: {e}", dir.display())),
        };
        let tmp = sibling(dir, "tmp");
        let _ = std::fs::remove_dir_all(&tmp);
        let result = self.write_files(&tmp).and_then(|()| {
            if existing {
                let old = sibling(dir, "old");
                let _ = std::fs::remove_dir_all(&old);
                std::fs::rename(dir, &old).map_err(|e| format!("cannot replace {}: {e}", dir.display()))?;
                std::fs::rename(&tmp, dir).map_err(|e| format!("cannot write {}: {e}", dir.display()))?;
                let _ = std::fs::remove_dir_all(&old);
                Ok(())
            } else {
                std::fs::rename(&tmp, dir).map_err(|e| format!("cannot write {}: {e}", dir.display()))
            }
        });
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        result
    }

    fn write_files(&self, root: &Path) -> Result<(), String> {
        std::fs::create_dir_all(root.join("blobs/sha256")).map_err(|e| format!("cannot create {}: {e}", root.display()))?;
        for (path, bytes) in &self.files {
            let p = root.join(path);
            std::fs::write(&p, bytes).map_err(|e| format!("cannot write {}: {e}", p.display()))?;
        }
        Ok(())
    }
}

/// `.NAME.KIND.PID` beside `path`, on the same file system so a rename is atomic.
fn sibling(path: &Path, kind: &str) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.{kind}{}", std::process::id()))
}

/// The manifest digest (`sha256:<hex>`) of the image tagged `tag` (or the only image) in an OCI layout directory,
/// after checking that the manifest blob is there and really has that digest.
pub fn layout_digest(dir: &Path, tag: Option<&str>) -> Result<String, String> {
    let at = dir.display();
    let index_path = dir.join("index.json");
    let index_text = std::fs::read(&index_path)
        .map_err(|e| format!("{at} is not an OCI image layout ({}: {e}); create one with `grantwall package -o {at}`", index_path.display()))?;
    let index: Value = serde_json::from_slice(&index_text).map_err(|e| format!("{}: not JSON: {e}", index_path.display()))?;
    let manifests = index.get("manifests").and_then(Value::as_array).cloned().unwrap_or_default();
    let name_of = |m: &Value| m.pointer("/annotations/org.opencontainers.image.ref.name").and_then(Value::as_str).map(str::to_string);
    let chosen: Vec<&Value> = match tag {
        Some(t) => manifests.iter().filter(|m| name_of(m).as_deref() == Some(t)).collect(),
        None => manifests.iter().collect(),
    };
    let manifest = match chosen.as_slice() {
        [one] => *one,
        [] => {
            let tags: Vec<String> = manifests.iter().filter_map(name_of).collect();
            return Err(format!("{}: no image{} (tags: {})", index_path.display(), tag.map(|t| format!(" tagged {t:?}")).unwrap_or_default(), tags.join(", ")));
        }
        _ => return Err(format!("{}: several images; name one with its tag", index_path.display())),
    };
    let digest = manifest.get("digest").and_then(Value::as_str).unwrap_or("");
    let Some(hex) = digest.strip_prefix("sha256:").filter(|h| is_sha256_hex(h)) else {
        return Err(format!("{}: manifest digest {digest:?} is not sha256:<64 hex digits>", index_path.display()));
    };
    let blob_path = dir.join("blobs/sha256").join(hex);
    let blob = std::fs::read(&blob_path).map_err(|e| format!("{}: {e}", blob_path.display()))?;
    if sha256_digest(&blob) != digest {
        return Err(format!("{}: content does not match its digest (corrupt layout); package again", blob_path.display()));
    }
    Ok(digest.to_string())
}

/// 64 lower-case hex digits.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const WASM: &[u8] = b"\0asm\x01\0\0\0 a tiny stand-in module";

    fn opts(variant: Variant) -> PackageOptions {
        PackageOptions { variant, tag: "0.1.0".into(), version: "0.1.0".into() }
    }

    fn json_file(layout: &Layout, path: &str) -> Value {
        serde_json::from_slice(&layout.files[path]).unwrap()
    }

    fn manifest(layout: &Layout) -> Value {
        let hex = layout.manifest_digest.trim_start_matches("sha256:");
        json_file(layout, &format!("blobs/sha256/{hex}"))
    }

    #[test]
    fn same_module_same_digest_and_bytes() {
        for v in [Variant::Oci, Variant::Compat] {
            let a = build(WASM, &opts(v)).unwrap();
            let b = build(WASM, &opts(v)).unwrap();
            assert_eq!(a.manifest_digest, b.manifest_digest);
            assert_eq!(a.files, b.files);
            assert_eq!(a.to_tar().unwrap(), b.to_tar().unwrap());
        }
    }

    #[test]
    fn a_different_module_or_tag_changes_what_it_should() {
        let a = build(WASM, &opts(Variant::Oci)).unwrap();
        let other = build(b"\0asm\x01\0\0\0 another module", &opts(Variant::Oci)).unwrap();
        assert_ne!(a.manifest_digest, other.manifest_digest);
        // The tag lives in index.json only: retagging keeps the manifest digest Istio pins.
        let retagged = build(WASM, &PackageOptions { tag: "latest".into(), ..opts(Variant::Oci) }).unwrap();
        assert_eq!(a.manifest_digest, retagged.manifest_digest);
        assert_ne!(a.files["index.json"], retagged.files["index.json"]);
    }

    #[test]
    fn every_blob_is_named_by_its_digest_and_every_descriptor_is_exact() {
        for v in [Variant::Oci, Variant::Compat] {
            let layout = build(WASM, &opts(v)).unwrap();
            for (path, bytes) in &layout.files {
                if let Some(hex) = path.strip_prefix("blobs/sha256/") {
                    assert_eq!(sha256_digest(bytes), format!("sha256:{hex}"));
                }
            }
            let m = manifest(&layout);
            let mut descriptors = vec![m["config"].clone()];
            descriptors.extend(m["layers"].as_array().unwrap().iter().cloned());
            for d in descriptors {
                let hex = d["digest"].as_str().unwrap().trim_start_matches("sha256:");
                let blob = &layout.files[&format!("blobs/sha256/{hex}")];
                assert_eq!(d["size"].as_u64().unwrap() as usize, blob.len());
            }
            let index = json_file(&layout, "index.json");
            assert_eq!(index["manifests"][0]["digest"], layout.manifest_digest.as_str());
            assert_eq!(json_file(&layout, "oci-layout"), json!({"imageLayoutVersion": "1.0.0"}));
        }
    }

    #[test]
    fn oci_variant_has_the_two_layers_istio_looks_for() {
        let layout = build(WASM, &opts(Variant::Oci)).unwrap();
        let m = manifest(&layout);
        assert_eq!(m["mediaType"], MANIFEST_MEDIA_TYPE);
        assert_eq!(m["config"]["mediaType"], WASM_CONFIG_MEDIA_TYPE);
        let types: Vec<&str> = m["layers"].as_array().unwrap().iter().map(|l| l["mediaType"].as_str().unwrap()).collect();
        assert_eq!(types, [WASM_CONFIG_MEDIA_TYPE, WASM_LAYER_MEDIA_TYPE]);
        let hex = m["layers"][1]["digest"].as_str().unwrap().trim_start_matches("sha256:");
        assert_eq!(layout.files[&format!("blobs/sha256/{hex}")], WASM);
    }

    #[test]
    fn compat_variant_is_one_tar_gzip_layer_holding_plugin_wasm() {
        use std::io::Read;
        let layout = build(WASM, &opts(Variant::Compat)).unwrap();
        let m = manifest(&layout);
        assert_eq!(m["annotations"][COMPAT_ANNOTATION], "compat");
        let layers = m["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 1);
        assert_eq!(layers[0]["mediaType"], TAR_GZIP_LAYER_MEDIA_TYPE);
        let hex = layers[0]["digest"].as_str().unwrap().trim_start_matches("sha256:");
        let gz = &layout.files[&format!("blobs/sha256/{hex}")];
        let mut tar_bytes = Vec::new();
        flate2::read::GzDecoder::new(gz.as_slice()).read_to_end(&mut tar_bytes).unwrap();
        let mut archive = tar::Archive::new(tar_bytes.as_slice());
        let mut entries = archive.entries().unwrap();
        let mut entry = entries.next().unwrap().unwrap();
        assert_eq!(entry.path().unwrap().to_str(), Some("plugin.wasm"));
        let mut content = Vec::new();
        entry.read_to_end(&mut content).unwrap();
        assert_eq!(content, WASM);
        assert!(entries.next().is_none());
        // rootfs.diff_ids names the uncompressed layer, as the image spec requires.
        let config_hex = m["config"]["digest"].as_str().unwrap().trim_start_matches("sha256:");
        let config = json_file(&layout, &format!("blobs/sha256/{config_hex}"));
        assert_eq!(config["rootfs"]["diff_ids"][0], sha256_digest(&tar_bytes).as_str());
    }

    #[test]
    fn json_keys_are_sorted_so_the_bytes_are_canonical() {
        // Guards against a dependency turning on serde_json's preserve_order, which would make bytes depend on
        // insertion order.
        let layout = build(WASM, &opts(Variant::Oci)).unwrap();
        let text = String::from_utf8(layout.files["index.json"].clone()).unwrap();
        let (a, b, c) = (text.find("\"manifests\"").unwrap(), text.find("\"mediaType\":\"application/vnd.oci.image.index").unwrap(), text.find("\"schemaVersion\"").unwrap());
        assert!(a < b && b < c, "{text}");
    }

    #[test]
    fn refuses_what_is_not_a_core_wasm_module() {
        assert!(build(b"hello", &opts(Variant::Oci)).unwrap_err().contains("not a WebAssembly module"));
        assert!(build(b"\0asm\x0d\0\x01\0", &opts(Variant::Oci)).unwrap_err().contains("component"));
        assert!(build(WASM, &PackageOptions { tag: "a b".into(), ..opts(Variant::Oci) }).unwrap_err().contains("--tag"));
    }

    #[test]
    fn layout_digest_reads_back_and_checks_the_manifest() {
        let dir = std::env::temp_dir().join(format!("gw-oci-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let layout = build(WASM, &opts(Variant::Oci)).unwrap();
        layout.write_dir(&dir).unwrap();
        assert_eq!(layout_digest(&dir, None).unwrap(), layout.manifest_digest);
        assert_eq!(layout_digest(&dir, Some("0.1.0")).unwrap(), layout.manifest_digest);
        assert!(layout_digest(&dir, Some("nope")).unwrap_err().contains("tags: 0.1.0"));
        // Writing again over an existing layout replaces it.
        build(WASM, &opts(Variant::Compat)).unwrap().write_dir(&dir).unwrap();
        assert_ne!(layout_digest(&dir, None).unwrap(), layout.manifest_digest);
        let hex = layout_digest(&dir, None).unwrap().trim_start_matches("sha256:").to_string();
        std::fs::write(dir.join("blobs/sha256").join(&hex), b"tampered").unwrap();
        assert!(layout_digest(&dir, None).unwrap_err().contains("does not match its digest"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refuses_to_overwrite_a_directory_that_is_not_a_layout() {
        let dir = std::env::temp_dir().join(format!("gw-oci-unit-other-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("precious.txt"), b"x").unwrap();
        let err = build(WASM, &opts(Variant::Oci)).unwrap().write_dir(&dir).unwrap_err();
        assert!(err.contains("not an OCI image layout"), "{err}");
        assert!(dir.join("precious.txt").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
