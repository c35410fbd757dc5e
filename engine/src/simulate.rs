//! `simulate`: see the module documentation once implemented.
