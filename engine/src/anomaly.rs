//! `anomaly`: see the module documentation once implemented.
