//! Pure conversions between the protocol's messages and the framework's types.

pub mod from_proto;
pub mod to_proto;
