//! `predictive-traces`: readers for usage traces and anomaly labels.
//!
//! Formats: the canonical `timestamp,value` CSV (optionally gzip-compressed) and the Bitbrains
//! GWA-T-12 semicolon format. Errors name the file and line that is wrong.
