//! The echo service's code; protoc comes from `protoc-bin-vendored`.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("proto");
    let proto = dir.join("echo.proto");
    println!("cargo:rerun-if-changed={}", proto.display());
    // SAFETY: build scripts are single-threaded, so mutating the environment is sound.
    unsafe {
        std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    }
    tonic_prost_build::configure().compile_protos(&[proto], &[dir])?;
    Ok(())
}
