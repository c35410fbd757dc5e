//! Compiles the plugin protocol definitions in `proto/` into tonic server code, and the
//! controller's API (`controller/proto/controller.proto`) into a client.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/tfplugin6.proto",
        "proto/go_plugin.proto",
        "proto/health.proto",
    ];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_protos(&protos, &["proto"])?;
    // A client of the controller's API (clone registration, forecasts as a history source).
    let controller = "../controller/proto/controller.proto";
    println!("cargo:rerun-if-changed={controller}");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .compile_protos(&[controller], &["../controller/proto"])?;
    Ok(())
}
