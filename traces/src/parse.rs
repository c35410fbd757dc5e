//! Line-level parsing of the two trace formats.

use crate::{Error, Metric, Result};
use flate2::read::MultiGzDecoder;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

/// A raw sample with the line it came from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Unix seconds.
    pub timestamp: i64,
    /// The value (may be NaN if the file says so; the series rules handle it).
    pub value: f64,
    /// 1-based line in its file.
    pub line: u64,
}

/// The format of a trace file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// `timestamp,value`.
    Canonical,
    /// Bitbrains GWA-T-12.
    Bitbrains,
}

fn open(path: &Path) -> Result<Box<dyn BufRead>> {
    let read_err = |source| Error::Read {
        path: path.to_owned(),
        source,
    };
    let mut f = BufReader::new(File::open(path).map_err(read_err)?);
    let is_gz = f.fill_buf().map_err(read_err)?.starts_with(&[0x1f, 0x8b]);
    Ok(if is_gz {
        Box::new(BufReader::with_capacity(1 << 16, MultiGzDecoder::new(f)))
    } else {
        Box::new(f)
    })
}

/// Reads one line into `buf` (without the line end); `Ok(false)` at the end of the file.
fn next_line(r: &mut dyn BufRead, buf: &mut String, path: &Path, line: u64) -> Result<bool> {
    buf.clear();
    let mut bytes = Vec::new();
    let n = r
        .read_until(b'\n', &mut bytes)
        .map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
    if n == 0 {
        return Ok(false);
    }
    match std::str::from_utf8(&bytes) {
        Ok(s) => buf.push_str(s.trim_end_matches(['\n', '\r'])),
        Err(_) => {
            return Err(Error::BadField {
                path: path.to_owned(),
                line,
                field: "line".into(),
                text: "(not UTF-8)".into(),
            })
        }
    }
    Ok(true)
}

fn format_of(header: &str) -> Option<Format> {
    let h = header.trim_start_matches('\u{feff}');
    if h.starts_with("Timestamp [ms]") {
        return Some(Format::Bitbrains);
    }
    let cols: Vec<String> = h
        .split(',')
        .map(|c| unquote(c).to_ascii_lowercase())
        .collect();
    (cols.iter().any(|c| c == "timestamp") && cols.iter().any(|c| c == "value"))
        .then_some(Format::Canonical)
}

fn unquote(s: &str) -> &str {
    let s = s.trim();
    s.strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .unwrap_or(s)
}

/// The format of a file, from its header.
///
/// # Errors
/// [`Error::Read`], [`Error::UnknownFormat`].
pub(crate) fn sniff(path: &Path) -> Result<Format> {
    let mut r = open(path)?;
    let mut head = String::new();
    next_line(&mut *r, &mut head, path, 1)?;
    format_of(&head).ok_or_else(|| Error::UnknownFormat {
        path: path.to_owned(),
    })
}

fn bad(path: &Path, line: u64, field: &str, text: &str) -> Error {
    Error::BadField {
        path: path.to_owned(),
        line,
        field: field.to_owned(),
        text: text.chars().take(40).collect(),
    }
}

/// Reads every sample of one file (`metric` picks the Bitbrains column).
///
/// Blank lines are skipped. Values are parsed as written (`NaN` included, which the series
/// rules then drop and count); an empty value or one written `NA`, `N/A`, `null` or `None`
/// is a missing sample and reads as `NaN` too.
///
/// # Errors
/// [`Error::Read`], [`Error::UnknownFormat`], [`Error::MissingColumn`], and
/// [`Error::BadField`] / [`Error::ShortRow`] naming the file and line.
pub fn read_samples(path: &Path, metric: Metric) -> Result<Vec<Sample>> {
    let mut r = open(path)?;
    let mut buf = String::new();
    if !next_line(&mut *r, &mut buf, path, 1)? {
        return Err(Error::UnknownFormat {
            path: path.to_owned(),
        });
    }
    let format = format_of(&buf).ok_or_else(|| Error::UnknownFormat {
        path: path.to_owned(),
    })?;
    let (sep, cols): (char, Vec<String>) = match format {
        Format::Bitbrains => (';', buf.split(';').map(|c| c.trim().to_owned()).collect()),
        Format::Canonical => (
            ',',
            buf.trim_start_matches('\u{feff}')
                .split(',')
                .map(|c| unquote(c).to_ascii_lowercase())
                .collect(),
        ),
    };
    let find = |name: &str| {
        cols.iter()
            .position(|c| c == name)
            .ok_or_else(|| Error::MissingColumn {
                path: path.to_owned(),
                column: name.to_owned(),
            })
    };
    let (ti, vi, vname) = match format {
        Format::Bitbrains => (
            find("Timestamp [ms]")?,
            find(metric.bitbrains_column())?,
            metric.bitbrains_column(),
        ),
        Format::Canonical => (find("timestamp")?, find("value")?, "value"),
    };
    let need = ti.max(vi) + 1;
    let mut out = Vec::new();
    let mut line = 1u64;
    loop {
        line += 1;
        if !next_line(&mut *r, &mut buf, path, line)? {
            break;
        }
        if buf.trim().is_empty() {
            continue;
        }
        let mut t_txt = None;
        let mut v_txt = None;
        let mut found = 0;
        for (i, f) in buf.split(sep).enumerate() {
            found = i + 1;
            if i == ti {
                t_txt = Some(f);
            }
            if i == vi {
                v_txt = Some(f);
            }
        }
        let (Some(t_txt), Some(v_txt)) = (t_txt, v_txt) else {
            return Err(Error::ShortRow {
                path: path.to_owned(),
                line,
                expected: cols.len().max(need),
                found,
            });
        };
        let t_txt = unquote(t_txt);
        let timestamp = match format {
            Format::Bitbrains => parse_unix(t_txt),
            Format::Canonical => parse_unix(t_txt).or_else(|| parse_datetime(t_txt)),
        }
        .ok_or_else(|| bad(path, line, "timestamp", t_txt))?;
        let v_txt = unquote(v_txt);
        let value: f64 = if is_missing(v_txt) {
            f64::NAN
        } else {
            v_txt.parse().map_err(|_| bad(path, line, vname, v_txt))?
        };
        out.push(Sample {
            timestamp,
            value,
            line,
        });
    }
    Ok(out)
}

/// Whether a value field says the sample is missing: empty, or `NA`, `N/A`, `null` or `None`
/// in any case (what exports write for a scrape that returned nothing). Such a sample is read
/// as `NaN`, like a value written `NaN`.
fn is_missing(s: &str) -> bool {
    s.is_empty()
        || ["na", "n/a", "null", "none"]
            .iter()
            .any(|m| s.eq_ignore_ascii_case(m))
}

/// Unix seconds written as a number (fractions are floored).
fn parse_unix(s: &str) -> Option<i64> {
    if s.is_empty()
        || !s.bytes().all(|b| {
            b.is_ascii_digit() || b == b'.' || b == b'-' || b == b'+' || b == b'e' || b == b'E'
        })
    {
        return None;
    }
    if let Ok(v) = s.parse::<i64>() {
        return Some(v);
    }
    let f: f64 = s.parse().ok()?;
    (f.is_finite() && f.abs() < 1e15).then(|| f.floor() as i64)
}

/// Parses `YYYY-MM-DD HH:MM[:SS[.fff]]` (or with `T`, optional `Z`) as UTC unix seconds.
pub fn parse_datetime(s: &str) -> Option<i64> {
    let s = s.trim().trim_end_matches('Z');
    let (date, time) = s.split_once([' ', 'T']).unwrap_or((s, "00:00:00"));
    let mut d = date.splitn(3, '-');
    let y: i64 = d.next()?.parse().ok()?;
    let mo: i64 = d.next()?.parse().ok()?;
    let da: i64 = d.next()?.parse().ok()?;
    let mut t = time.trim().splitn(3, ':');
    let h: i64 = t.next()?.parse().ok()?;
    let mi: i64 = t.next()?.parse().ok()?;
    let sec: f64 = match t.next() {
        Some(x) => x.parse().ok()?,
        None => 0.0,
    };
    if !(1..=12).contains(&mo)
        || !(1..=31).contains(&da)
        || !(0..24).contains(&h)
        || !(0..60).contains(&mi)
        || !(0.0..61.0).contains(&sec)
    {
        return None;
    }
    Some(
        predictive_engine::civil::days_from_civil(y, mo, da) * 86_400
            + h * 3600
            + mi * 60
            + sec.floor() as i64,
    )
}

/// Reads a whole (possibly gzip-compressed) file as text.
pub(crate) fn read_text(path: &Path) -> Result<String> {
    let mut r = open(path)?;
    let mut s = String::new();
    r.read_to_string(&mut s).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    Ok(s)
}
