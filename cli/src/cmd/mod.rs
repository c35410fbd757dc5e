//! One module per subcommand. Each exposes `Args` (or `Command`) and `run`.

pub(crate) mod audit;
pub(crate) mod bench_allocate;
pub(crate) mod bench_anomaly;
pub(crate) mod bench_forecast;
pub(crate) mod bench_size;
pub(crate) mod catalog;
pub(crate) mod controller;
pub(crate) mod demo;
pub(crate) mod explain;
pub(crate) mod forecast;
pub(crate) mod release;
pub(crate) mod simulate;
pub(crate) mod size;
pub(crate) mod status;
