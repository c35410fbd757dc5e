//! `predictive-controller`: the tokio shell that runs the scaling loop
//! (observe → forecast → decide → act), its store, API and metrics.
