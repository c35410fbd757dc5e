//! `shadow`: see the module documentation once implemented.
