//! `terraform-provider-predictive`: a Terraform provider speaking plugin protocol 6 on tonic.
//!
//! Layers, as in terraform-plugin-framework:
//! - [`plugin`]: the go-plugin handshake, AutoMTLS, health/controller services, debug mode;
//! - [`proto`]: the `tfplugin6.Provider` tonic service;
//! - [`convert`]: pure conversions between protocol messages and framework types;
//! - [`value`]: cty values with their msgpack and JSON encodings (exact decimals, unknowns);
//! - [`framework`]: schemas, validators, plan modifiers, defaults, diagnostics, state upgrades;
//! - [`provider`]: the predictive provider itself, its resources and data sources;
//! - [`docs`]: registry-layout documentation generated from the schemas.

pub mod convert;
pub mod docs;
pub mod framework;
pub mod plugin;
pub mod proto;
pub mod provider;
pub mod value;

/// Generated protocol 6 messages and services.
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod tfplugin6 {
    tonic::include_proto!("tfplugin6");
}

/// Generated go-plugin (controller, stdio, broker) and gRPC health messages and services.
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod plugin_pb {
    tonic::include_proto!("plugin");
    pub use health::*;
    /// The gRPC health protocol.
    pub mod health {
        tonic::include_proto!("grpc.health.v1");
    }
}

/// Generated client of the `predictive` controller's API (`controller/proto/controller.proto`).
#[allow(
    missing_docs,
    unreachable_pub,
    missing_debug_implementations,
    clippy::all
)]
pub mod controller_pb {
    tonic::include_proto!("predictive.controller.v1");
}
