//! NAB anomaly windows (`labels/combined_windows.json`).

use crate::{parse, Error, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// Anomaly windows per file (`"<dir>/<file>.csv"` → `[(start, end)]`, unix seconds, inclusive).
pub type Windows = BTreeMap<String, Vec<(i64, i64)>>;

/// Reads NAB's `combined_windows.json`.
///
/// # Errors
/// [`Error::Read`], [`Error::BadLabels`] for malformed JSON or a timestamp that does not parse.
pub fn read_windows(path: &Path) -> Result<Windows> {
    let text = parse::read_text(path)?;
    let raw: BTreeMap<String, Vec<(String, String)>> =
        serde_json::from_str(&text).map_err(|source| Error::BadLabels {
            path: path.to_owned(),
            source,
        })?;
    let mut out = Windows::new();
    for (k, ws) in raw {
        let mut v = Vec::with_capacity(ws.len());
        for (a, b) in ws {
            let (Some(a), Some(b)) = (parse::parse_datetime(&a), parse::parse_datetime(&b)) else {
                let source = <serde_json::Error as serde::de::Error>::custom(format!(
                    "window of `{k}` has a timestamp that is not `YYYY-MM-DD HH:MM:SS`"
                ));
                return Err(Error::BadLabels {
                    path: path.to_owned(),
                    source,
                });
            };
            v.push((a, b));
        }
        out.insert(k, v);
    }
    Ok(out)
}
