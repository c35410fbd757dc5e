//! `predictive-traces`: readers for usage traces and anomaly labels.
//!
//! Formats (see the benchmark protocol):
//! - **canonical CSV**: header `timestamp,value`; timestamps are `YYYY-MM-DD HH:MM:SS` (UTC,
//!   optional fractional seconds, `T` accepted as separator) or unix seconds. NAB's format.
//! - **Bitbrains GWA-T-12**: `;`-separated (plus tabs), header `Timestamp [ms]; CPU cores; …`;
//!   the timestamp column holds unix *seconds* despite its label. [`Metric`] picks the column.
//!
//! Either may be gzip-compressed (detected from the content, `.csv.gz` by convention).
//!
//! A directory is searched recursively for `*.csv` and `*.csv.gz`. A series id is the name of
//! the directory given plus the file's path below it without the extension
//! (`nab/realAWSCloudwatch/ec2_cpu_utilization_24ae8d`). Bitbrains keeps one file per VM and
//! month: files in Bitbrains format with the same stem are one VM and are joined, with id
//! `<dir name>/<stem>` (`bitbrains_rnd/1`). This matches `reference_statsforecast.py`.
//!
//! [`SeriesStream`] loads one series at a time, so memory stays flat in the number of series.
//! Every error names the file and, when it is about content, the line (1-based).
//!
//! ```no_run
//! use predictive_traces::{discover, Metric, SeriesStream};
//! use predictive_engine::series::Aggregation;
//! let entries = discover(&["../shared/data/traces/bitbrains_rnd"]).unwrap();
//! for item in SeriesStream::new(entries, Metric::Cpu, 3600, Aggregation::Mean) {
//!     let (id, series, report) = item.unwrap();
//!     println!("{id}: {} hourly points, {} gaps filled", series.len(), report.gaps_filled);
//! }
//! ```

mod labels;
mod parse;

pub use labels::{read_windows, Windows};
pub use parse::{parse_datetime, read_samples, Format, Sample};

use predictive_engine::series::{self, Aggregation, SampleReport, Series};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Errors of trace reading. Each names the file, and the line when the content is wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file or directory could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The header is not one of the supported formats.
    #[error("{}:1: unrecognised header (expected `timestamp,value` or Bitbrains `Timestamp [ms];…`)", path.display())]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
    /// The header lacks a needed column.
    #[error("{}:1: no column `{column}` in the header", path.display())]
    MissingColumn {
        /// The file.
        path: PathBuf,
        /// The column.
        column: String,
    },
    /// A field could not be parsed.
    #[error("{}:{line}: cannot parse {field} `{text}`", path.display())]
    BadField {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: u64,
        /// Which field (`timestamp`, `value`, a column name).
        field: String,
        /// The offending text (truncated to 40 characters).
        text: String,
    },
    /// A row has fewer fields than the header.
    #[error("{}:{line}: expected {expected} fields, found {found}", path.display())]
    ShortRow {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: u64,
        /// Fields in the header.
        expected: usize,
        /// Fields in the row.
        found: usize,
    },
    /// The samples of a file cannot form a series; names the sample's line when there is one.
    #[error("{}{}: samples do not form a series", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Series {
        /// The file.
        path: PathBuf,
        /// 1-based line of the offending sample, if one sample is to blame.
        line: Option<u64>,
        /// The cause.
        #[source]
        source: series::Error,
    },
    /// A labels file is not the expected JSON.
    #[error("{}: not a NAB windows file", path.display())]
    BadLabels {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// An unknown metric name.
    #[error(
        "unknown metric `{name}` (expected cpu, mem, net-in, net-out, disk-read or disk-write)"
    )]
    UnknownMetric {
        /// The rejected name.
        name: String,
    },
}

/// Result of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which column of a multi-metric trace (Bitbrains) to read. Single-value formats ignore it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Metric {
    /// `CPU usage [MHZ]`.
    #[default]
    Cpu,
    /// `Memory usage [KB]`.
    Mem,
    /// `Network received throughput [KB/s]`.
    NetIn,
    /// `Network transmitted throughput [KB/s]`.
    NetOut,
    /// `Disk read throughput [KB/s]`.
    DiskRead,
    /// `Disk write throughput [KB/s]`.
    DiskWrite,
}

impl Metric {
    /// Every metric.
    pub const ALL: [Metric; 6] = [
        Metric::Cpu,
        Metric::Mem,
        Metric::NetIn,
        Metric::NetOut,
        Metric::DiskRead,
        Metric::DiskWrite,
    ];

    /// Command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Cpu => "cpu",
            Metric::Mem => "mem",
            Metric::NetIn => "net-in",
            Metric::NetOut => "net-out",
            Metric::DiskRead => "disk-read",
            Metric::DiskWrite => "disk-write",
        }
    }

    /// The Bitbrains column holding it.
    pub fn bitbrains_column(self) -> &'static str {
        match self {
            Metric::Cpu => "CPU usage [MHZ]",
            Metric::Mem => "Memory usage [KB]",
            Metric::NetIn => "Network received throughput [KB/s]",
            Metric::NetOut => "Network transmitted throughput [KB/s]",
            Metric::DiskRead => "Disk read throughput [KB/s]",
            Metric::DiskWrite => "Disk write throughput [KB/s]",
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Metric {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Metric::ALL
            .into_iter()
            .find(|m| m.name() == s || (s == "memory" && *m == Metric::Mem))
            .ok_or_else(|| Error::UnknownMetric { name: s.to_owned() })
    }
}

/// One series to load: its id and the files holding it (several for a Bitbrains VM's months).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The series id.
    pub id: String,
    /// Its files, sorted by path.
    pub files: Vec<PathBuf>,
}

/// Finds the trace files under each path (a file is taken as it is, a directory is searched
/// recursively) and groups them into series, sorted by id.
///
/// # Errors
/// [`Error::Read`] for an unreadable directory or file, [`Error::UnknownFormat`] for a `.csv`
/// file whose header is neither format.
pub fn discover<P: AsRef<Path>>(paths: &[P]) -> Result<Vec<Entry>> {
    let mut groups: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for root in paths {
        let root = root.as_ref();
        let meta = std::fs::metadata(root).map_err(|source| Error::Read {
            path: root.to_owned(),
            source,
        })?;
        if meta.is_file() {
            let id = strip_ext(&root.file_name().unwrap_or_default().to_string_lossy()).to_owned();
            groups.entry(id).or_default().push(root.to_owned());
            continue;
        }
        let name = root
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| root.display().to_string());
        let mut files = Vec::new();
        walk(root, &mut files)?;
        files.sort();
        for f in files {
            let rel = f.strip_prefix(root).unwrap_or(&f);
            let rel = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            let id = if parse::sniff(&f)? == Format::Bitbrains {
                let stem = f.file_name().unwrap_or_default().to_string_lossy();
                format!("{name}/{}", strip_ext(&stem))
            } else {
                format!("{name}/{}", strip_ext(&rel))
            };
            groups.entry(id).or_default().push(f);
        }
    }
    Ok(groups
        .into_iter()
        .map(|(id, files)| Entry { id, files })
        .collect())
}

fn strip_ext(s: &str) -> &str {
    s.strip_suffix(".csv.gz")
        .or_else(|| s.strip_suffix(".csv"))
        .unwrap_or(s)
}

fn is_trace_name(p: &Path) -> bool {
    let n = p.file_name().unwrap_or_default().to_string_lossy();
    n.ends_with(".csv") || n.ends_with(".csv.gz")
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let rd = std::fs::read_dir(dir).map_err(|source| Error::Read {
        path: dir.to_owned(),
        source,
    })?;
    for e in rd {
        let e = e.map_err(|source| Error::Read {
            path: dir.to_owned(),
            source,
        })?;
        let p = e.path();
        let ft = e.file_type().map_err(|source| Error::Read {
            path: p.clone(),
            source,
        })?;
        if ft.is_dir() {
            walk(&p, out)?;
        } else if is_trace_name(&p) {
            out.push(p);
        }
    }
    Ok(())
}

/// Reads the files of one series and resamples them onto a grid of `step` seconds.
///
/// # Errors
/// Any read or parse error of its files; [`Error::Series`] when the samples cannot form a
/// series (no finite value, a timestamp far out of range), naming the file and line.
pub fn load(
    entry: &Entry,
    metric: Metric,
    step: i64,
    agg: Aggregation,
) -> Result<(Series, SampleReport)> {
    let mut samples: Vec<Sample> = Vec::new();
    let mut origin: Vec<(usize, usize)> = Vec::new(); // (first sample index, file index)
    for (i, f) in entry.files.iter().enumerate() {
        origin.push((samples.len(), i));
        samples.extend(read_samples(f, metric)?);
    }
    let first = entry.files.first().cloned().unwrap_or_default();
    Series::from_samples(samples.iter().map(|s| (s.timestamp, s.value)), step, agg).map_err(
        |source| {
            let (path, line) = match &source {
                series::Error::SpanTooLarge { index, .. } => {
                    let fi = origin
                        .iter()
                        .rev()
                        .find(|(s, _)| s <= index)
                        .map_or(0, |o| o.1);
                    (entry.files[fi].clone(), samples.get(*index).map(|s| s.line))
                }
                _ => (first, None),
            };
            Error::Series { path, line, source }
        },
    )
}

/// Loads series one at a time from a list of [`Entry`]s (from [`discover`]).
#[derive(Debug)]
pub struct SeriesStream {
    entries: std::vec::IntoIter<Entry>,
    metric: Metric,
    step: i64,
    agg: Aggregation,
}

impl SeriesStream {
    /// A stream over `entries`, resampled to `step` seconds with `agg`.
    pub fn new(entries: Vec<Entry>, metric: Metric, step: i64, agg: Aggregation) -> Self {
        Self {
            entries: entries.into_iter(),
            metric,
            step,
            agg,
        }
    }
}

impl Iterator for SeriesStream {
    type Item = Result<(String, Series, SampleReport)>;

    fn next(&mut self) -> Option<Self::Item> {
        let e = self.entries.next()?;
        Some(load(&e, self.metric, self.step, self.agg).map(|(s, r)| (e.id, s, r)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.entries.size_hint()
    }
}

/// Parses a duration such as `1h`, `5min`, `300s`, `30m`, `1d` or a bare number of seconds.
///
/// # Errors
/// `None` for anything else or a non-positive duration.
pub fn parse_duration(s: &str) -> Option<i64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: i64 = num.parse().ok()?;
    let mult = match unit.trim() {
        "" | "s" | "sec" => 1,
        "m" | "min" | "T" => 60,
        "h" | "H" => 3600,
        "d" | "D" => 86_400,
        _ => return None,
    };
    n.checked_mul(mult).filter(|&v| v > 0)
}

#[cfg(test)]
mod tests;
