//! A small framework in the manner of terraform-plugin-framework: schemas with descriptions,
//! validators, plan modifiers and defaults ([`schema`], [`modifiers`]), diagnostics with attribute
//! paths ([`diag`]), and the resource/data-source traits plus the generic request logic ([`server`]).

pub mod diag;
pub mod modifiers;
pub mod schema;
pub mod server;

pub use diag::{AttrPath, Diagnostic, Diagnostics, PathStep, Severity};
pub use schema::{Attribute, Block, NestedBlock, Nesting, Schema};
