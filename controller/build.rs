//! Generates the gRPC service of the controller's API from `proto/controller.proto`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/controller.proto");
    tonic_prost_build::configure().compile_protos(&["proto/controller.proto"], &["proto"])?;
    Ok(())
}
