//! `cost`: see the module documentation once implemented.
