//! `policy`: see the module documentation once implemented.
