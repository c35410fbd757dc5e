//! `predictive bench anomaly`: online anomaly scores in NAB's results format, scored the NAB way
//! (PROTOCOL.md §3).
//!
//! For every `timestamp,value` CSV under the given directories, the engine's online detector
//! scores each sample using only the samples before it, and the scores are written to
//! `OUTDIR/<dataset>/<file>` as `timestamp,value,anomaly_score`. When labels are available
//! (`--labels`, or `labels/combined_windows.json` found beside the data), the corpus is scored
//! under NAB's three profiles and one line per profile is printed.

use anyhow::{bail, Context as _};
use predictive_engine::anomaly::nab::{self, ScoredSeries};
use predictive_engine::anomaly::{Detector, DetectorParams};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Arguments of this subcommand.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Directories (searched recursively) or files holding `timestamp,value` CSVs.
    #[arg(required = true)]
    dirs: Vec<PathBuf>,
    /// Where to write `<dataset>/<file>` score CSVs.
    #[arg(long)]
    out: PathBuf,
    /// NAB windows file (`combined_windows.json`); default: `labels/combined_windows.json` in a
    /// DIR or one of its two parents.
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Print one JSON object per profile instead of text.
    #[arg(long)]
    json: bool,
}

/// One input series.
#[derive(Debug)]
pub(crate) struct Input {
    /// `<dataset>/<file>`, the key into the labels and the output path.
    pub(crate) key: String,
    /// Source file.
    pub(crate) path: PathBuf,
    /// Timestamps as written in the file.
    pub(crate) raw_timestamps: Vec<String>,
    /// Timestamps in unix seconds.
    pub(crate) timestamps: Vec<i64>,
    /// Values.
    pub(crate) values: Vec<f64>,
}

/// Runs the subcommand.
pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let inputs = load_inputs(&args.dirs)?;
    let labels_path = match &args.labels {
        Some(p) => Some(p.clone()),
        None => find_labels(&args.dirs),
    };
    let params = DetectorParams::default();
    let mut corpus = Vec::with_capacity(inputs.len());
    for input in &inputs {
        let scores = score_series(&input.values, &input.timestamps, &params)
            .with_context(|| input.path.display().to_string())?;
        write_scores(&args.out, input, &scores)?;
        corpus.push((input, scores));
    }
    let seconds = started.elapsed().as_secs_f64();
    let Some(labels_path) = labels_path else {
        eprintln!(
            "wrote {} series to {}; no labels found (pass --labels FILE) so no NAB score",
            inputs.len(),
            args.out.display()
        );
        return Ok(());
    };
    let windows = read_windows(&labels_path)?;
    let scored = attach_windows(corpus, &windows, &labels_path)?;
    let results = nab::score_all_profiles(&scored).context("NAB scoring")?;
    for r in &results {
        if args.json {
            let line = serde_json::json!({
                "detector": "predictive",
                "profile": r.profile,
                "score": r.normalized,
                "threshold": r.threshold,
                "raw": r.raw,
                "null": r.null,
                "perfect": r.perfect,
                "windows": r.windows,
                "detected_windows": r.detected_windows,
                "false_positives": r.false_positives,
                "series": scored.len(),
                "seconds": seconds,
            });
            println!("{line}");
        } else {
            println!(
                "{:<20} score {:>6.1}  (threshold {:.4}, {}/{} windows, {} false positives, raw {:.2}, null {:.2}, perfect {:.2})",
                r.profile,
                r.normalized,
                r.threshold,
                r.detected_windows,
                r.windows,
                r.false_positives,
                r.raw,
                r.null,
                r.perfect
            );
        }
    }
    Ok(())
}

/// Scores a series online with a fresh detector whose season is one day of samples.
pub(crate) fn score_series(
    values: &[f64],
    timestamps: &[i64],
    params: &DetectorParams,
) -> anyhow::Result<Vec<f64>> {
    let mut p = params.clone();
    if p.season == 0 {
        p.season = daily_season(timestamps);
    }
    let mut d = Detector::new(p.check().context("detector settings")?);
    Ok(values.iter().map(|&x| d.observe(x).score).collect())
}

/// Samples per day at the median sampling step, or 0 when that is not between 4 and 2000.
pub(crate) fn daily_season(timestamps: &[i64]) -> usize {
    let mut steps: Vec<i64> = timestamps
        .windows(2)
        .map(|w| w[1] - w[0])
        .filter(|d| *d > 0)
        .collect();
    if steps.is_empty() {
        return 0;
    }
    let mid = steps.len() / 2;
    let step = *steps.select_nth_unstable(mid).1;
    let season = (86_400 + step / 2) / step;
    if (4..=2000).contains(&season) {
        season as usize
    } else {
        0
    }
}

/// Pairs each scored input with its windows.
pub(crate) fn attach_windows(
    corpus: Vec<(&Input, Vec<f64>)>,
    windows: &BTreeMap<String, Vec<(i64, i64)>>,
    labels_path: &Path,
) -> anyhow::Result<Vec<ScoredSeries>> {
    corpus
        .into_iter()
        .map(|(input, scores)| {
            let w = windows.get(&input.key).with_context(|| {
                format!("{} has no entry `{}`", labels_path.display(), input.key)
            })?;
            Ok(ScoredSeries {
                name: input.key.clone(),
                timestamps: input.timestamps.clone(),
                scores,
                windows: w.clone(),
            })
        })
        .collect()
}

pub(crate) fn write_scores(out: &Path, input: &Input, scores: &[f64]) -> anyhow::Result<()> {
    let path = out.join(&input.key);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let file =
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = std::io::BufWriter::new(file);
    writeln!(w, "timestamp,value,anomaly_score")?;
    for ((t, v), s) in input.raw_timestamps.iter().zip(&input.values).zip(scores) {
        writeln!(w, "{t},{v},{s}")?;
    }
    w.flush()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// `labels/combined_windows.json` in a DIR or one of its two parents.
pub(crate) fn find_labels(dirs: &[PathBuf]) -> Option<PathBuf> {
    dirs.iter().find_map(|d| {
        d.ancestors()
            .take(3)
            .map(|a| a.join("labels").join("combined_windows.json"))
            .find(|p| p.is_file())
    })
}

/// Reads NAB's windows file: `{"<dataset>/<file>": [["start", "end"], ...], ...}`.
pub(crate) fn read_windows(path: &Path) -> anyhow::Result<BTreeMap<String, Vec<(i64, i64)>>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let raw: BTreeMap<String, Vec<Vec<String>>> =
        serde_json::from_str(&text).with_context(|| {
            format!(
                "{}: expected an object of [[start, end], ...] lists",
                path.display()
            )
        })?;
    let mut out = BTreeMap::new();
    for (key, list) in raw {
        let mut windows = Vec::with_capacity(list.len());
        for (k, pair) in list.iter().enumerate() {
            let [start, end] = pair.as_slice() else {
                bail!(
                    "{}: `{key}` window {k} does not have exactly two timestamps",
                    path.display()
                );
            };
            let parse = |s: &str| {
                parse_timestamp(s).with_context(|| {
                    format!(
                        "{}: `{key}` window {k}: bad timestamp `{s}`",
                        path.display()
                    )
                })
            };
            windows.push((parse(start)?, parse(end)?));
        }
        out.insert(key, windows);
    }
    Ok(out)
}

/// Every `.csv` under the arguments (recursively), sorted by key.
pub(crate) fn load_inputs(dirs: &[PathBuf]) -> anyhow::Result<Vec<Input>> {
    let mut files = Vec::new();
    for d in dirs {
        if d.is_file() {
            files.push(d.clone());
        } else if d.is_dir() {
            collect_csvs(d, &mut files)?;
        } else {
            bail!("{}: no such file or directory", d.display());
        }
    }
    files.sort();
    files.dedup();
    let mut inputs = Vec::with_capacity(files.len());
    for path in files {
        let dataset = path
            .parent()
            .and_then(|p| p.file_name())
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let file = path
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let key = if dataset.is_empty() {
            file
        } else {
            format!("{dataset}/{file}")
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let (raw_timestamps, timestamps, values) =
            parse_csv(&text).with_context(|| format!("{}", path.display()))?;
        inputs.push(Input {
            key,
            path,
            raw_timestamps,
            timestamps,
            values,
        });
    }
    if inputs.is_empty() {
        bail!("no .csv file found under the given directories");
    }
    Ok(inputs)
}

fn collect_csvs(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
    for e in entries {
        let p = e
            .with_context(|| format!("listing {}", dir.display()))?
            .path();
        if p.is_dir() {
            collect_csvs(&p, out)?;
        } else if p.extension().is_some_and(|x| x == "csv") {
            out.push(p);
        }
    }
    Ok(())
}

type Parsed = (Vec<String>, Vec<i64>, Vec<f64>);

/// Parses a canonical `timestamp,value` CSV.
fn parse_csv(text: &str) -> anyhow::Result<Parsed> {
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, h)) if h.trim().eq_ignore_ascii_case("timestamp,value") => {}
        Some((_, h)) => bail!("line 1: expected header `timestamp,value`, found `{h}`"),
        None => bail!("empty file"),
    }
    let (mut raw, mut ts, mut vs) = (Vec::new(), Vec::new(), Vec::new());
    for (i, line) in lines {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let lineno = i + 1;
        let (t, v) = line
            .split_once(',')
            .with_context(|| format!("line {lineno}: expected `timestamp,value`"))?;
        let secs = parse_timestamp(t.trim())
            .with_context(|| format!("line {lineno}: bad timestamp `{t}`"))?;
        let value: f64 = v
            .trim()
            .parse()
            .ok()
            .filter(|x: &f64| x.is_finite())
            .with_context(|| format!("line {lineno}: bad value `{v}`"))?;
        // Repeated timestamps occur at daylight-saving changes; going back in time is an error.
        if ts.last().is_some_and(|&prev| secs < prev) {
            bail!("line {lineno}: timestamp `{t}` is earlier than the previous one");
        }
        raw.push(t.trim().to_owned());
        ts.push(secs);
        vs.push(value);
    }
    Ok((raw, ts, vs))
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff]` (UTC) or unix seconds, to unix seconds.
pub(crate) fn parse_timestamp(s: &str) -> anyhow::Result<i64> {
    if let Ok(n) = s.parse::<i64>() {
        return Ok(n);
    }
    let s = s.split('.').next().unwrap_or(s);
    let (date, time) = s
        .split_once([' ', 'T'])
        .context("expected `YYYY-MM-DD HH:MM:SS` or unix seconds")?;
    let num = |p: Option<&str>, what: &str| -> anyhow::Result<i64> {
        p.and_then(|x| x.parse().ok())
            .with_context(|| format!("bad {what}"))
    };
    let mut d = date.split('-');
    let (y, mo, da) = (
        num(d.next(), "year")?,
        num(d.next(), "month")?,
        num(d.next(), "day")?,
    );
    let mut t = time.split(':');
    let (h, mi, se) = (
        num(t.next(), "hour")?,
        num(t.next(), "minute")?,
        num(t.next(), "second")?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&da) || h > 23 || mi > 59 || se > 60 {
        bail!("date or time field out of range");
    }
    Ok(days_from_civil(y, mo, da) * 86_400 + h * 3600 + mi * 60 + se)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
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
    fn timestamps_should_parse_nab_and_unix_forms() {
        assert_eq!(parse_timestamp("1970-01-01 00:00:00").unwrap(), 0);
        assert_eq!(
            parse_timestamp("2014-02-19 10:50:00.000000").unwrap(),
            1_392_807_000
        );
        assert_eq!(parse_timestamp("1392807000").unwrap(), 1_392_807_000);
        assert!(parse_timestamp("2014-13-01 00:00:00").is_err());
        assert!(parse_timestamp("yesterday").is_err());
    }

    #[test]
    fn csv_errors_should_name_the_line() {
        let e = parse_csv("timestamp,value\n2014-01-01 00:00:00,1\n2014-01-01 00:05:00,x\n")
            .unwrap_err();
        assert!(format!("{e:#}").contains("line 3"), "{e:#}");
        let e = parse_csv("time,v\n").unwrap_err();
        assert!(format!("{e:#}").contains("line 1"), "{e:#}");
    }

    #[test]
    fn bench_should_write_nab_results_and_find_labels_beside_the_data() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data").join("synthetic");
        std::fs::create_dir_all(&data).unwrap();
        // 1000 five-minute samples of a slow wave with one spike at row 700.
        let mut csv = String::from("timestamp,value\n");
        let t0 = parse_timestamp("2024-01-01 00:00:00").unwrap();
        let fmt = |t: i64| {
            let (d, s) = (t.div_euclid(86_400), t.rem_euclid(86_400));
            format!(
                "2024-01-{:02} {:02}:{:02}:00",
                d - t0 / 86_400 + 1,
                s / 3600,
                s % 3600 / 60
            )
        };
        for i in 0..1000i64 {
            let v = if i == 700 {
                500.0
            } else {
                50.0 + 10.0 * ((i as f64) / 20.0).sin()
            };
            csv.push_str(&format!("{},{v}\n", fmt(t0 + 300 * i)));
        }
        std::fs::write(data.join("wave.csv"), csv).unwrap();
        let labels = root.path().join("labels");
        std::fs::create_dir_all(&labels).unwrap();
        let window = format!(
            r#"{{"synthetic/wave.csv": [["{}.000000", "{}.000000"]]}}"#,
            fmt(t0 + 300 * 650),
            fmt(t0 + 300 * 750)
        );
        std::fs::write(labels.join("combined_windows.json"), window).unwrap();
        let out = root.path().join("out");
        run(Args {
            dirs: vec![root.path().join("data")],
            out: out.clone(),
            labels: None,
            json: true,
        })
        .unwrap();
        let written = std::fs::read_to_string(out.join("synthetic").join("wave.csv")).unwrap();
        let mut lines = written.lines();
        assert_eq!(lines.next(), Some("timestamp,value,anomaly_score"));
        let scores: Vec<f64> = lines
            .map(|l| l.rsplit(',').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(scores.len(), 1000);
        assert!(scores.iter().all(|s| (0.0..=1.0).contains(s)));
        assert!(scores[700] > 0.9, "spike scored {}", scores[700]);
        // The windows file is read and keyed like NAB's.
        let w = read_windows(&labels.join("combined_windows.json")).unwrap();
        assert_eq!(
            w["synthetic/wave.csv"],
            vec![(t0 + 300 * 650, t0 + 300 * 750)]
        );
        assert_eq!(
            find_labels(&[root.path().join("data")]),
            Some(labels.join("combined_windows.json"))
        );
    }

    #[test]
    fn a_series_missing_from_the_labels_should_be_named() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("d");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("a.csv"), "timestamp,value\n1,1\n2,2\n").unwrap();
        let labels = root.path().join("w.json");
        std::fs::write(&labels, "{}").unwrap();
        let e = run(Args {
            dirs: vec![data],
            out: root.path().join("o"),
            labels: Some(labels),
            json: false,
        })
        .unwrap_err();
        assert!(format!("{e:#}").contains("d/a.csv"), "{e:#}");
    }
}
