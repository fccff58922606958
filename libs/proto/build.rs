//! Generates the v1 contracts from `proto/` into `OUT_DIR` (nothing generated is committed).

use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let mut protos = Vec::new();
    collect_protos(&root, &mut protos)?;
    protos.sort();
    // prost-build does not reliably emit rerun-if-changed for every input, so do it here.
    println!("cargo:rerun-if-changed={}", root.display());
    for proto in &protos {
        println!("cargo:rerun-if-changed={}", proto.display());
    }
    println!("cargo:rerun-if-env-changed=PROTOC");

    // prost-build reads the compiler's path from PROTOC.
    if let Some(protoc) = find_protoc() {
        set_protoc(&protoc);
    }

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("getlood_descriptor.bin"))
        .compile_protos(&protos, &[root])?;
    Ok(())
}

fn collect_protos(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_protos(&path, out)?;
        } else if path.extension().is_some_and(|ext| ext == "proto") {
            out.push(path);
        }
    }
    Ok(())
}

/// `PROTOC` first, then a `protoc` on `PATH`, then the vendored binary (GreptimeDB's order).
fn find_protoc() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PROTOC") {
        return Some(PathBuf::from(p));
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join("protoc");
            if candidate.is_file() && protoc_is_recent(&candidate) {
                return Some(candidate);
            }
        }
    }
    protoc_bin_vendored::protoc_bin_path().ok()
}

/// proto3 `optional` needs protoc >= 3.15; older system binaries are skipped.
fn protoc_is_recent(protoc: &Path) -> bool {
    let Ok(out) = std::process::Command::new(protoc).arg("--version").output() else {
        return false;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text.trim().trim_start_matches("libprotoc ").to_owned();
    let mut parts = version.split('.').filter_map(|p| p.parse::<u32>().ok());
    match (parts.next(), parts.next()) {
        (Some(3), Some(minor)) => minor >= 15,
        (Some(major), _) => major > 3,
        _ => false,
    }
}

#[allow(unsafe_code)]
fn set_protoc(path: &Path) {
    // SAFETY: build scripts run single-threaded; nothing reads the environment concurrently.
    unsafe { std::env::set_var("PROTOC", path) };
}
