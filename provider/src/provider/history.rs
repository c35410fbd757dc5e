//! Workload history from a file source: canonical `timestamp,value` CSV (optionally gzipped), one
//! file per workload, found by its stem under the configured path.
//!
//! A small reader kept here so the provider does not wait on the traces crate; timestamps are unix
//! seconds or `YYYY-MM-DD HH:MM:SS` (UTC).

use std::io::Read as _;
use std::path::{Path, PathBuf};

/// Errors of reading history.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No file for the workload.
    #[error("no history file for workload {workload:?} under {}", .root.display())]
    WorkloadNotFound {
        /// The workload asked for.
        workload: String,
        /// Where it was looked for.
        root: PathBuf,
    },
    /// The file could not be read.
    #[error("could not read {}", .0.display())]
    ReadFailed(PathBuf, #[source] std::io::Error),
    /// A line is malformed.
    #[error("{}:{line}: {reason}", .path.display())]
    BadLine {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

/// Finds the file of `workload` (file stem) under `root` (a file or a directory, searched
/// recursively).
///
/// # Errors
/// [`Error::WorkloadNotFound`] when there is none.
pub fn find(root: &Path, workload: &str) -> Result<PathBuf, Error> {
    let stem_matches = |p: &Path| {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        name == format!("{workload}.csv") || name == format!("{workload}.csv.gz")
    };
    if root.is_file() {
        return Ok(root.to_path_buf());
    }
    let mut stack = vec![root.to_path_buf()];
    let mut found = Vec::new();
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if stem_matches(&p) {
                found.push(p);
            }
        }
    }
    found.sort();
    found
        .into_iter()
        .next()
        .ok_or_else(|| Error::WorkloadNotFound {
            workload: workload.into(),
            root: root.to_path_buf(),
        })
}

/// Reads `(unix seconds, value)` samples from a canonical CSV file.
///
/// # Errors
/// When the file cannot be read or a line is malformed (the error names file and line).
pub fn read_samples(path: &Path) -> Result<Vec<(i64, f64)>, Error> {
    let raw = std::fs::read(path).map_err(|e| Error::ReadFailed(path.to_path_buf(), e))?;
    let text = if path.extension().is_some_and(|e| e == "gz") {
        let mut s = String::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_string(&mut s)
            .map_err(|e| Error::ReadFailed(path.to_path_buf(), e))?;
        s
    } else {
        String::from_utf8(raw).map_err(|_| Error::BadLine {
            path: path.to_path_buf(),
            line: 1,
            reason: "not UTF-8 text".into(),
        })?
    };
    parse(&text).map_err(|(line, reason)| Error::BadLine {
        path: path.to_path_buf(),
        line,
        reason,
    })
}

/// Parses canonical CSV text; errors carry the 1-based line number.
pub fn parse(text: &str) -> Result<Vec<(i64, f64)>, (usize, String)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || (i == 0 && line.to_ascii_lowercase().starts_with("timestamp")) {
            continue;
        }
        let (ts, val) = line
            .split_once(',')
            .ok_or((i + 1, "expected `timestamp,value`".to_string()))?;
        let t = parse_time(ts.trim()).ok_or((i + 1, format!("bad timestamp {:?}", ts.trim())))?;
        let v: f64 = val
            .trim()
            .parse()
            .map_err(|_| (i + 1, format!("bad value {:?}", val.trim())))?;
        if !v.is_finite() {
            return Err((i + 1, format!("value {v} is not finite")));
        }
        out.push((t, v));
    }
    if out.is_empty() {
        return Err((1, "no samples".into()));
    }
    Ok(out)
}

fn parse_time(s: &str) -> Option<i64> {
    if let Ok(t) = s.parse::<i64>() {
        return Some(t);
    }
    let (date, time) = s.split_once(' ').or_else(|| s.split_once('T'))?;
    let d: Vec<i64> = date
        .split('-')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let t: Vec<i64> = time
        .trim_end_matches('Z')
        .split(':')
        .map(|x| x.parse::<f64>().ok().map(|f| f as i64))
        .collect::<Option<_>>()?;
    if d.len() != 3 || t.len() < 2 {
        return None;
    }
    let days = days_from_civil(d[0], d[1], d[2]);
    Some(days * 86_400 + t[0] * 3600 + t[1] * 60 + t.get(2).copied().unwrap_or(0))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_timestamp_forms_should_parse() {
        let s = parse("timestamp,value\n2014-02-14 14:30:00,2.5\n1392388260,3\n").unwrap();
        assert_eq!(s, vec![(1_392_388_200, 2.5), (1_392_388_260, 3.0)]);
    }

    #[test]
    fn a_bad_line_should_be_named() {
        assert_eq!(parse("timestamp,value\n1,2\n2,x\n").unwrap_err().0, 3);
        assert_eq!(parse("timestamp,value\n1;2\n").unwrap_err().0, 2);
    }
}
