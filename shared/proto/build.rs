//! Generates the suite's protobuf and gRPC code. protoc comes from the
//! `protoc-bin-vendored` crate so a fresh machine needs no system install.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read at run time: a build script binary may be reused from another checkout.
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let root = root.canonicalize()?;
    let protos: Vec<PathBuf> = [
        "retention/common/v1/common.proto",
        "retention/profile/v1/profile.proto",
        "retention/profile/v1/events.proto",
        "retention/interactions/v1/interactions.proto",
        "retention/interactions/v1/events.proto",
        "retention/segmentation/v1/segmentation.proto",
        "retention/segmentation/v1/events.proto",
        "retention/winback/v1/winback.proto",
        "retention/winback/v1/events.proto",
    ]
    .iter()
    .map(|p| root.join(p))
    .collect();
    for p in &protos {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    // SAFETY: build scripts are single-threaded, so mutating the environment is sound.
    unsafe {
        std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    }
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    // Type names let events be packed into `google.protobuf.Any` by type.
    let mut config = prost_build::Config::new();
    config.enable_type_names();
    config.type_name_domain(["."], "type.googleapis.com");
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("retention_descriptor.bin"))
        .compile_with_config(config, &protos, &[root])?;
    Ok(())
}
