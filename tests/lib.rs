//! Cross-crate integration tests of `predictive`; the tests are the `[[test]]` targets of this crate.
