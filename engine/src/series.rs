//! `series`: see the module documentation once implemented.
