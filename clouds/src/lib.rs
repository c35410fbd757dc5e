//! `predictive-clouds`: the `CloudProvider` port, its shared types and errors, the in-process `sim`
//! cloud (the embedded default), the `fake` used by controller tests, and the adapters for EC2,
//! Azure and GCP behind cargo features.
