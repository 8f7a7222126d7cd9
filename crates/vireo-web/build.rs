//! Embeds web/dist (the web app's committed build output, see docs/web.md):
//! writes `assets.rs` into OUT_DIR with one entry per file, its bytes, a gzip
//! copy (kept only when smaller) and an ETag.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let dist = manifest.join("../../web/dist");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo:rerun-if-changed={}", dist.display());
    let mut files = Vec::new();
    collect(&dist, &dist, &mut files);
    files.sort();
    assert!(
        files.iter().any(|(url, _)| url == "/index.html"),
        "{} has no index.html: run scripts/build-web.sh",
        dist.display()
    );
    let mut table = String::from("pub static ASSETS: &[Asset] = &[\n");
    for (index, (url, path)) in files.iter().enumerate() {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let etag = format!("\"{}\"", &hex(&Sha256::digest(&bytes))[..32]);
        let gzip = match gzip(&bytes) {
            Some(compressed) if compressed.len() < bytes.len() => {
                let gz_path = out.join(format!("asset-{index}.gz"));
                std::fs::write(&gz_path, compressed).expect("cannot write to OUT_DIR");
                format!("Some(include_bytes!({:?}))", gz_path.display().to_string())
            }
            _ => "None".to_string(),
        };
        let path = path.canonicalize().expect("a file just read has a canonical path");
        let _ = writeln!(
            table,
            "    Asset {{ url: {url:?}, bytes: include_bytes!({:?}), gzip: {gzip}, etag: {etag:?} }},",
            path.display().to_string()
        );
    }
    table.push_str("];\n");
    std::fs::write(out.join("assets.rs"), table).expect("cannot write to OUT_DIR");
}

/// Every file under `dir` as (URL path, file path).
fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("cannot list web/dist").path();
        if path.is_dir() {
            collect(root, &path, files);
        } else {
            let relative = path.strip_prefix(root).expect("under the root").to_string_lossy().into_owned();
            files.push((format!("/{relative}"), path));
        }
    }
}

fn gzip(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
    encoder.write_all(bytes).ok()?;
    encoder.finish().ok()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut text, byte| {
        let _ = write!(text, "{byte:02x}");
        text
    })
}
