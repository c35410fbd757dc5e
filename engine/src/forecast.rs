//! `forecast`: see the module documentation once implemented.
