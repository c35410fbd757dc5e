//! `predictive bench anomaly`: online anomaly scores in NAB's results format, scored the NAB way
//! (PROTOCOL.md §3).
//!
//! For every trace under the given directories (found and read by `predictive-traces`: canonical
//! `timestamp,value` CSV or Bitbrains, `.csv` or `.csv.gz`), the engine's online detector scores
//! each sample using only the samples before it, and the scores are written to
//! `OUTDIR/<dataset>/<file>.csv` as `timestamp,value,anomaly_score`. When labels are available
//! (`--labels`, or `labels/combined_windows.json` found beside the data), the corpus is scored
//! under NAB's three profiles and one line per profile is printed.
//!
//! Two further modes measure generalisation:
//! - `--cross-validate`: a 2-fold split of the files (by a hash of the file name, stratified by
//!   dataset directory). On each half the detector settings are chosen from a small grid, then
//!   scored on the other half, with the threshold NAB would optimise there and with the one
//!   chosen on the training half.
//! - `--inject`: the inputs are backgrounds (for example Bitbrains VMs); one anomaly of a known
//!   kind is injected into each (leak, burst, drop, level shift, flatline in turn), the
//!   synthetic corpus is written in NAB's layout (`OUTDIR/data/synthetic/*.csv`,
//!   `OUTDIR/labels/combined_windows.json`, scores under `OUTDIR/results/synthetic/`), and
//!   detection is reported per kind at the detector's alert threshold.
//!
//! `--resample STEP` first turns every series into means over `STEP` buckets (empty buckets stay
//! gaps; labels keep their timestamps), the way a coarser monitoring period would have recorded
//! it: the same anomalies at another sampling step. `--perturb KIND` scores a copy of every
//! series as another collector could have recorded it (gaps, samples lost at random, jittered
//! or irregular timestamps, `nan` values, a large constant part; `anomaly::perturb`).
//!
//! A row whose timestamp goes back is scored where it stands (a warning names it), so every
//! input row has its output row.

use anyhow::{bail, Context as _};
use predictive_engine::anomaly::nab::{self, ProfileScore, ScoredSeries};
use predictive_engine::anomaly::perturb::{perturb, Perturbation, Perturbed};
use predictive_engine::anomaly::synth::{self, Injected};
use predictive_engine::anomaly::{
    Detector, DetectorParams, StepClock, Verdict, ALERT_THRESHOLD, DEFAULT_MEMORY,
    REFERENCE_STEP_SECS,
};
use predictive_traces::{discover, parse_duration, read_samples, read_windows, Metric, Windows};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Arguments of this subcommand.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Directories (searched recursively) or files holding traces (`.csv`, `.csv.gz`).
    #[arg(required = true)]
    dirs: Vec<PathBuf>,
    /// Where to write `<dataset>/<file>` score CSVs.
    #[arg(long)]
    out: PathBuf,
    /// NAB windows file (`combined_windows.json`); default: `labels/combined_windows.json` in a
    /// DIR or one of its two parents.
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Column of multi-metric traces (Bitbrains): cpu, mem, net-in, net-out, disk-read, disk-write.
    #[arg(long, default_value = "cpu")]
    metric: String,
    /// Also run the 2-fold split: choose settings on one half of the files, score the other.
    #[arg(long, conflicts_with = "inject")]
    cross_validate: bool,
    /// Treat the inputs as backgrounds: inject one known anomaly per series and report detection
    /// per kind (the first `--inject-len` samples of each series are used).
    #[arg(long)]
    inject: bool,
    /// Samples of each background used by `--inject` (default: 14 days at 5 minutes).
    #[arg(long, default_value_t = 4032)]
    inject_len: usize,
    /// Average every series over buckets of this duration (`15min`, `1h`, …) before scoring;
    /// empty buckets stay gaps and the labels keep their timestamps.
    #[arg(long)]
    resample: Option<String>,
    /// Score a perturbed copy of every series instead: `gaps`, `sparse`, `jitter`, `irregular`,
    /// `nan` or `offset` (docs/anomaly.md); windows move with their rows when the timestamps
    /// change.
    #[arg(long, conflicts_with = "inject")]
    perturb: Option<String>,
    /// Seed of `--perturb` (each file's copy is drawn from it and the file's name).
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Detector settings as a JSON object of `DetectorParams` fields (for example
    /// `{"warmup": 1500}`); fields left out keep their defaults. Windows are in 5-minute
    /// samples and are fitted to each series' step. With `--cross-validate` the grid varies
    /// its knobs around these.
    #[arg(long)]
    params: Option<String>,
    /// Print JSON lines instead of text.
    #[arg(long)]
    json: bool,
}

/// One input series.
#[derive(Debug, Clone)]
pub(crate) struct Input {
    /// `<dataset>/<file>.csv`, the key into the labels and the output path.
    pub(crate) key: String,
    /// Timestamps in unix seconds, in the file's order: a row may go back in time (a clock
    /// stepped back, rows merged out of order). It is scored where it stands, at the time it
    /// arrives ([`arrival_times`]).
    pub(crate) timestamps: Vec<i64>,
    /// Values.
    pub(crate) values: Vec<f64>,
}

/// Runs the subcommand.
pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let metric: Metric = args.metric.parse().context("--metric")?;
    let params = base_params(args.params.as_deref())?;
    let mut inputs = load_inputs(&args.dirs, metric)?;
    if let Some(text) = &args.resample {
        let step = parse_duration(text)
            .filter(|s| *s > 0)
            .with_context(|| format!("--resample: cannot read `{text}` as a positive duration"))?;
        inputs = inputs.iter().map(|i| bucket_means(i, step)).collect();
    }
    if args.inject {
        return run_injected(&args, inputs, &params);
    }
    let moved = match &args.perturb {
        Some(text) => {
            let kind: Perturbation = text
                .parse()
                .map_err(|e: String| anyhow::anyhow!("--perturb: {e}"))?;
            perturb_inputs(&mut inputs, kind, args.seed)
        }
        None => Moved::new(),
    };
    let labels_path = match &args.labels {
        Some(p) => Some(p.clone()),
        None => find_labels(&args.dirs),
    };
    let started = std::time::Instant::now();
    let mut all_scores = Vec::with_capacity(inputs.len());
    for input in &inputs {
        let scores = score_series(&input.values, &input.timestamps, &params)
            .with_context(|| input.key.clone())?;
        write_scores(&args.out, input, &scores)?;
        all_scores.push(scores);
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
    let mut windows = read_windows(&labels_path)
        .with_context(|| format!("reading labels {}", labels_path.display()))?;
    move_windows(&mut windows, &moved);
    let scored = attach_windows(&inputs, all_scores, &windows, &labels_path)?;
    let results = nab::score_all_profiles(&scored).context("NAB scoring")?;
    for r in &results {
        print_profile(r, "all", scored.len(), Some(seconds), args.json);
    }
    // The same corpus at the detector's own alert threshold, fixed before seeing any label.
    for profile in nab::CostProfile::all() {
        let r = nab::score_corpus_at(&scored, &profile, ALERT_THRESHOLD)?;
        print_profile(&r, "all@alert", scored.len(), None, args.json);
    }
    if args.cross_validate {
        cross_validate(&inputs, &scored, &params, args.json)?;
    }
    Ok(())
}

/// Copies whose timestamps moved (`--perturb irregular`), by key: the series' own timestamps
/// and the copy, to move the windows with their rows.
type Moved = BTreeMap<String, (Vec<i64>, Perturbed)>;

/// Replaces every input by its perturbed copy, drawn from `seed` and the input's key.
fn perturb_inputs(inputs: &mut [Input], kind: Perturbation, seed: u64) -> Moved {
    let mut moved = Moved::new();
    for input in inputs {
        let copy = perturb(
            &input.timestamps,
            &input.values,
            kind,
            seed ^ fnv1a(&input.key),
        );
        let original = std::mem::replace(&mut input.timestamps, copy.timestamps.clone());
        input.values.clone_from(&copy.values);
        if kind.moves_time() {
            moved.insert(input.key.clone(), (original, copy));
        }
    }
    moved
}

/// Moves the windows of the copies in `moved` with their rows (a window no row falls in is
/// dropped).
fn move_windows(windows: &mut Windows, moved: &Moved) {
    for (key, (original, copy)) in moved {
        if let Some(ws) = windows.get_mut(key) {
            *ws = ws
                .iter()
                .filter_map(|w| copy.move_window(original, *w))
                .collect();
        }
    }
}

/// The detector settings: the defaults, with the fields of `--params` (a JSON object) over them.
fn base_params(json: Option<&str>) -> anyhow::Result<DetectorParams> {
    let Some(json) = json else {
        return Ok(DetectorParams::default());
    };
    let p: DetectorParams =
        serde_json::from_str(json).context("--params: not a JSON object of detector settings")?;
    p.clone().check().context("--params")?;
    Ok(p)
}

fn print_profile(r: &ProfileScore, set: &str, series: usize, seconds: Option<f64>, json: bool) {
    if json {
        let mut line = serde_json::json!({
            "detector": "predictive",
            "set": set,
            "profile": r.profile,
            "score": r.normalized,
            "threshold": r.threshold,
            "raw": r.raw,
            "null": r.null,
            "perfect": r.perfect,
            "windows": r.windows,
            "detected_windows": r.detected_windows,
            "false_positives": r.false_positives,
            "series": series,
        });
        if let Some(s) = seconds {
            line["seconds"] = s.into();
        }
        outln!("{line}");
    } else {
        outln!(
            "{set:<24} {:<20} score {:>6.1}  (threshold {:.4}, {}/{} windows, {} false positives, raw {:.2}, null {:.2}, perfect {:.2})",
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

/// Intervals between a series' first timestamps that fix its step. The step is a property of
/// the sampling, but it is read from the series itself, so the samples before it is known score
/// 0: every score uses only the data up to its own timestamp (a series cut short scores its
/// samples as the whole series does).
const STEP_PROBE: usize = 48;

/// A series run online through a fresh detector.
struct Detected {
    verdicts: Vec<Verdict>,
    /// The detector's season in samples (0: none).
    season: usize,
}

/// Runs a series online through a fresh detector whose season is one day of samples and whose
/// windows are fitted to the step (`DetectorParams::at_step`, [`window_step`]), read from the
/// first [`STEP_PROBE`] intervals ([`sampling_step`]). The timestamps are put on a grid of
/// that step (`StepClock`): an empty slot is told to the detector as a missing sample, so its
/// seasonal phase stays on time, and a sample up to half a step off its slot is not a gap.
fn detect_series(
    values: &[f64],
    timestamps: &[i64],
    params: &DetectorParams,
) -> anyhow::Result<Detected> {
    let probe = &timestamps[..timestamps.len().min(STEP_PROBE + 1)];
    let step = sampling_step(probe);
    let mut p = params.clone();
    if p.season == 0 {
        p.season = daily_season(step);
    }
    let season = p.season;
    let step = step.unwrap_or(0);
    let p = p.at_step(window_step(probe, step));
    let mut d = Detector::new(p.check().context("detector settings")?);
    let mut clock = StepClock::new(step);
    let verdicts = values
        .iter()
        .zip(timestamps)
        .enumerate()
        .map(|(i, (&x, &at))| {
            // Samples that never arrived: the detector keeps its seasonal phase on time.
            d.skip(clock.missing_before(at));
            let v = d.observe(x);
            if i < STEP_PROBE {
                Verdict { score: 0.0, ..v }
            } else {
                v
            }
        })
        .collect();
    Ok(Detected { verdicts, season })
}

/// The scores of [`detect_series`].
pub(crate) fn score_series(
    values: &[f64],
    timestamps: &[i64],
    params: &DetectorParams,
) -> anyhow::Result<Vec<f64>> {
    Ok(detect_series(values, timestamps, params)?
        .verdicts
        .iter()
        .map(|v| v.score)
        .collect())
}

/// Intervals in each span [`sampling_step`] measures.
const STEP_SPAN: usize = 4;

/// The sampling step of timestamps: the median of the spans of [`STEP_SPAN`] consecutive
/// intervals, divided by their number (the median interval when there are fewer). A median
/// ignores the spans with a gap as long as most have none, and over a span collection jitter
/// weighs a quarter of what it does on one interval.
fn sampling_step(timestamps: &[i64]) -> Option<i64> {
    let k = if timestamps.len() > STEP_SPAN {
        STEP_SPAN
    } else {
        1
    };
    let mut spans: Vec<i64> = timestamps
        .windows(k + 1)
        .map(|w| w[k] - w[0])
        .filter(|d| *d > 0)
        .collect();
    if spans.is_empty() {
        return None;
    }
    let mid = spans.len() / 2;
    let span = *spans.select_nth_unstable(mid).1;
    Some(((span as f64 / k as f64).round() as i64).max(1))
}

/// Least share of the probe's time that samples at a step finer than five minutes must
/// cover for the detector's windows to be fitted to that step.
const FINE_COVERAGE: f64 = 0.5;

/// The step the detector's windows are fitted to, from the probe's timestamps and the
/// sampling step read from them: the step itself, unless it is finer than five minutes and
/// the samples cover less than [`FINE_COVERAGE`] of the probe's time at it. Such a series is
/// events in bursts (key presses, requests: many a few seconds apart, then minutes of
/// nothing), not a finer sampling; its windows are fitted to the mean interval, so that they
/// still span the time they are meant to on average. Fitted to the step inside the bursts,
/// a two-day warm-up would take up the whole series. An unknown step (0) stays unknown, so
/// the windows keep their settings as the clock does.
fn window_step(probe: &[i64], step: i64) -> i64 {
    if step <= 0 || step >= REFERENCE_STEP_SECS || probe.len() < 2 {
        return step;
    }
    let first = probe[0];
    let span = probe.iter().copied().max().unwrap_or(first) - first;
    let intervals = (probe.len() - 1) as f64;
    if span <= 0 || intervals * step as f64 >= FINE_COVERAGE * span as f64 {
        return step;
    }
    ((span as f64 / intervals).round() as i64).max(1)
}

/// Samples per day at a series' sampling step (`sampling_step`), or 0 when that is
/// unknown or not between 4 and 2000.
fn daily_season(step: Option<i64>) -> usize {
    let Some(step) = step else {
        return 0;
    };
    let season = (86_400 + step / 2) / step;
    if (4..=2000).contains(&season) {
        season as usize
    } else {
        0
    }
}

/// Pairs each input's scores with its windows.
pub(crate) fn attach_windows(
    inputs: &[Input],
    scores: Vec<Vec<f64>>,
    windows: &Windows,
    labels_path: &Path,
) -> anyhow::Result<Vec<ScoredSeries>> {
    inputs
        .iter()
        .zip(scores)
        .map(|(input, scores)| {
            let w = windows.get(&input.key).with_context(|| {
                format!("{} has no entry `{}`", labels_path.display(), input.key)
            })?;
            Ok(ScoredSeries {
                name: input.key.clone(),
                timestamps: arrival_times(&input.timestamps),
                scores,
                windows: w.clone(),
            })
        })
        .collect()
}

/// When each row arrives: its timestamp, or the latest one before it when it goes back in
/// time. Online, a row stamped earlier than one already seen is news only when it comes, and
/// NAB's scoring places every row in time by these.
fn arrival_times(timestamps: &[i64]) -> Vec<i64> {
    timestamps
        .iter()
        .scan(i64::MIN, |latest, &t| {
            *latest = (*latest).max(t);
            Some(*latest)
        })
        .collect()
}

fn write_scores(out: &Path, input: &Input, scores: &[f64]) -> anyhow::Result<()> {
    let path = out.join(&input.key);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let file =
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = std::io::BufWriter::new(file);
    writeln!(w, "timestamp,value,anomaly_score")?;
    for ((t, v), s) in input.timestamps.iter().zip(&input.values).zip(scores) {
        writeln!(w, "{},{v},{s}", format_timestamp(*t))?;
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

/// The NAB key of a series: `<parent directory>/<file stem>.csv`.
fn nab_key(file: &Path) -> String {
    let name = file
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name
        .strip_suffix(".csv.gz")
        .or_else(|| name.strip_suffix(".csv"))
        .unwrap_or(&name);
    match file
        .parent()
        .and_then(|p| p.file_name())
        .map(|s| s.to_string_lossy().into_owned())
    {
        Some(dataset) if !dataset.is_empty() => format!("{dataset}/{stem}.csv"),
        _ => format!("{stem}.csv"),
    }
}

/// Every trace under the arguments, read with `predictive-traces`, sorted by key. Files that
/// `predictive-traces` groups into one series (a Bitbrains VM's months) are joined in time order.
pub(crate) fn load_inputs(dirs: &[PathBuf], metric: Metric) -> anyhow::Result<Vec<Input>> {
    let entries = discover(dirs).context("finding traces")?;
    let mut inputs = Vec::with_capacity(entries.len());
    for entry in entries {
        let Some(first) = entry.files.first() else {
            continue;
        };
        let mut samples = Vec::new();
        for f in &entry.files {
            samples.extend(read_samples(f, metric)?);
        }
        if entry.files.len() > 1 {
            samples.sort_by_key(|s| s.timestamp);
        } else {
            // NAB's results format has one row per input row, in the input's order, so a row
            // that goes back in time is scored where it stands rather than failing the run.
            let mut back = samples
                .windows(2)
                .filter(|w| w[1].timestamp < w[0].timestamp);
            if let Some(w) = back.next() {
                eprintln!(
                    "warning: {}:{}: timestamp earlier than the previous line's ({} such lines in the file); every line is scored in file order, at the time it arrives",
                    first.display(),
                    w[1].line,
                    1 + back.count()
                );
            }
        }
        inputs.push(Input {
            key: nab_key(first),
            timestamps: samples.iter().map(|s| s.timestamp).collect(),
            values: samples.iter().map(|s| s.value).collect(),
        });
    }
    if inputs.is_empty() {
        bail!("no .csv or .csv.gz trace found under the given paths");
    }
    inputs.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(inputs)
}

/// The series as means over buckets of `step` seconds (aligned to multiples of `step` since the
/// epoch, each stamped with its start). Buckets without a sample are left out, so a gap stays a
/// gap.
fn bucket_means(input: &Input, step: i64) -> Input {
    let mut timestamps: Vec<i64> = Vec::new();
    let mut values: Vec<f64> = Vec::new();
    let mut count = 0.0;
    for (&t, &v) in input.timestamps.iter().zip(&input.values) {
        let bucket = t.div_euclid(step) * step;
        if timestamps.last() == Some(&bucket) {
            count += 1.0;
            if let Some(mean) = values.last_mut() {
                *mean += (v - *mean) / count;
            }
        } else {
            timestamps.push(bucket);
            values.push(v);
            count = 1.0;
        }
    }
    Input {
        key: input.key.clone(),
        timestamps,
        values,
    }
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of unix seconds, as NAB writes timestamps.
pub(crate) fn format_timestamp(t: i64) -> String {
    predictive_engine::civil::CivilTime::from_unix(t).to_sql()
}

// ---------------------------------------------------------------------------------------------
// 2-fold split

/// FNV-1a of a file name: a fixed, documented hash (not `std`'s, which may change).
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Fold (0 or 1) of every key: within each dataset directory, files sorted by the hash of their
/// file name alternate between the folds, so every category is split in halves.
pub(crate) fn folds(keys: &[String]) -> Vec<usize> {
    let mut by_dataset: BTreeMap<&str, Vec<(u64, usize)>> = BTreeMap::new();
    for (i, k) in keys.iter().enumerate() {
        let (dataset, file) = k.rsplit_once('/').unwrap_or(("", k));
        by_dataset
            .entry(dataset)
            .or_default()
            .push((fnv1a(file), i));
    }
    let mut out = vec![0; keys.len()];
    // Alternate the starting fold across datasets so odd-sized ones do not all favour fold 0.
    let mut start = 0;
    for (_, mut files) in by_dataset {
        files.sort_unstable();
        for (rank, (_, i)) in files.iter().enumerate() {
            out[*i] = (rank + start) % 2;
        }
        start += files.len() % 2;
    }
    out
}

/// The grid the settings are chosen from, around `base`: the memory, the knobs of the shift and
/// change tests and of event suppression (`memory` 6000/8064 × `short_window` 12/24 ×
/// `long_window` 0/72 × `shift_allowance` 1.5/2/3 × `quiet_period` 0/72/144, 72 candidates).
fn candidates(base: &DetectorParams) -> Vec<DetectorParams> {
    let mut out = Vec::new();
    for memory in [6000, DEFAULT_MEMORY] {
        for short_window in [12, 24] {
            for long_window in [0, 72] {
                for shift_allowance in [1.5, 2.0, 3.0] {
                    for quiet_period in [0, 72, 144] {
                        out.push(DetectorParams {
                            memory,
                            short_window,
                            long_window,
                            shift_allowance,
                            quiet_period,
                            ..base.clone()
                        });
                    }
                }
            }
        }
    }
    out
}

fn subset(scored: &[ScoredSeries], fold: &[usize], which: usize) -> Vec<ScoredSeries> {
    scored
        .iter()
        .zip(fold)
        .filter(|(_, f)| **f == which)
        .map(|(s, _)| s.clone())
        .collect()
}

fn cross_validate(
    inputs: &[Input],
    scored: &[ScoredSeries],
    base: &DetectorParams,
    json: bool,
) -> anyhow::Result<()> {
    let keys: Vec<String> = inputs.iter().map(|i| i.key.clone()).collect();
    let fold = folds(&keys);
    let grid = candidates(base);
    // Score every candidate once on every file, two threads at a time.
    let per_candidate: Vec<Vec<ScoredSeries>> = std::thread::scope(|scope| {
        let chunks: Vec<_> = grid
            .chunks(grid.len().div_ceil(2))
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|p| {
                            inputs
                                .iter()
                                .zip(scored)
                                .map(|(input, s)| {
                                    Ok(ScoredSeries {
                                        scores: score_series(&input.values, &input.timestamps, p)?,
                                        ..s.clone()
                                    })
                                })
                                .collect::<anyhow::Result<Vec<_>>>()
                        })
                        .collect::<anyhow::Result<Vec<_>>>()
                })
            })
            .collect();
        chunks
            .into_iter()
            .map(|h| h.join().expect("scoring thread panicked"))
            .collect::<anyhow::Result<Vec<_>>>()
            .map(|v| v.into_iter().flatten().collect())
    })?;
    for train in 0..2 {
        let test = 1 - train;
        let mut best: Option<(usize, ProfileScore)> = None;
        for (c, series) in per_candidate.iter().enumerate() {
            let r = nab::score_corpus(&subset(series, &fold, train), &nab::CostProfile::STANDARD)?;
            if best
                .as_ref()
                .is_none_or(|(_, b)| r.normalized > b.normalized)
            {
                best = Some((c, r));
            }
        }
        let (c, train_std) = best.context("empty settings grid")?;
        let p = &grid[c];
        let train_set = subset(&per_candidate[c], &fold, train);
        let test_set = subset(&per_candidate[c], &fold, test);
        for profile in nab::CostProfile::all() {
            let tr = nab::score_corpus(&train_set, &profile)?;
            let own = nab::score_corpus(&test_set, &profile)?;
            let fixed = nab::score_corpus_at(&test_set, &profile, tr.threshold)?;
            if json {
                outln!(
                    "{}",
                    serde_json::json!({
                        "detector": "predictive",
                        "set": format!("fold{train}->fold{test}"),
                        "profile": profile.name,
                        "train_series": train_set.len(),
                        "test_series": test_set.len(),
                        "chosen": {"memory": p.memory, "short_window": p.short_window, "long_window": p.long_window, "shift_allowance": p.shift_allowance, "quiet_period": p.quiet_period},
                        "train_score": tr.normalized,
                        "train_threshold": tr.threshold,
                        "test_score": own.normalized,
                        "test_threshold": own.threshold,
                        "test_score_at_train_threshold": fixed.normalized,
                        "test_windows": own.windows,
                        "test_detected_windows": fixed.detected_windows,
                        "test_false_positives": fixed.false_positives,
                    })
                );
            } else {
                outln!(
                    "fold{train}->fold{test} {:<20} chosen memory {} short {} long {} allowance {} quiet {}: train {:>5.1}, held-out {:>5.1} (own threshold {:.4}), {:>5.1} at the training threshold {:.4} ({}/{} windows, {} false positives)",
                    profile.name,
                    p.memory,
                    p.short_window,
                    p.long_window,
                    p.shift_allowance,
                    p.quiet_period,
                    tr.normalized,
                    own.normalized,
                    own.threshold,
                    fixed.normalized,
                    tr.threshold,
                    fixed.detected_windows,
                    own.windows,
                    fixed.false_positives,
                );
            }
        }
        debug_assert!(train_std.normalized.is_finite());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Injected anomalies

/// Per-kind detection counts.
#[derive(Debug, Default, Clone, serde::Serialize)]
struct KindReport {
    series: usize,
    /// Windows with an alert (score ≥ ALERT_THRESHOLD) inside.
    detected: usize,
    /// Series where an alert within two days of the onset named the kind right.
    kind_right: usize,
    /// Delays (samples from the onset) of the first alert at or after the onset.
    delays: Vec<usize>,
    /// Alerts outside the window, after the probationary period.
    false_alerts: usize,
}

fn run_injected(args: &Args, inputs: Vec<Input>, params: &DetectorParams) -> anyhow::Result<()> {
    let mut corpus = Vec::new();
    let mut labels: BTreeMap<String, Vec<[String; 2]>> = BTreeMap::new();
    let mut reports: BTreeMap<Injected, KindReport> = BTreeMap::new();
    let mut k = 0usize;
    for input in &inputs {
        let n = input.values.len().min(args.inject_len);
        let kind = Injected::ALL[k % Injected::ALL.len()];
        // The onset falls between 55 % and 85 % of the series, from the hash of its name.
        let onset = n * 55 / 100 + (fnv1a(&input.key) as usize) % (n * 30 / 100).max(1);
        let Some(s) = synth::inject(&input.values[..n], kind, onset) else {
            continue;
        };
        k += 1;
        let stem = input.key.trim_end_matches(".csv").replace('/', "_");
        let key = format!("synthetic/{}_{stem}.csv", kind.name());
        // The synthetic corpus is stamped with arrival times, so its labels are in order.
        let ts = arrival_times(&input.timestamps[..n]);
        let series_in = Input {
            key: key.clone(),
            timestamps: ts.clone(),
            values: s.values.clone(),
        };
        let Detected { verdicts, season } = detect_series(&s.values, &ts, params)?;
        let scores: Vec<f64> = verdicts.iter().map(|v| v.score).collect();
        write_scores(&args.out.join("results"), &series_in, &scores)?;
        write_series(&args.out.join("data"), &series_in)?;
        let (l, r) = s.window;
        let rep = reports.entry(kind).or_default();
        rep.series += 1;
        if (l..=r).any(|i| verdicts[i].score >= ALERT_THRESHOLD) {
            rep.detected += 1;
        }
        // The kind is named right when an alert within two days of the onset names it (with a
        // season a leak needs a day of climbing before it can be told from a daily ramp).
        let day = season.max(1);
        if verdicts[s.onset..(s.onset + 2 * day).min(n)]
            .iter()
            .any(|v| v.score >= ALERT_THRESHOLD && v.kind.is_some_and(|kd| kind.accepts(kd)))
        {
            rep.kind_right += 1;
        }
        if let Some(i) = (s.onset..=r).find(|&i| verdicts[i].score >= ALERT_THRESHOLD) {
            rep.delays.push(i - s.onset);
        }
        let probation = nab::probation_len(n);
        rep.false_alerts += (probation..n)
            .filter(|&i| (i < l || i > r) && verdicts[i].score >= ALERT_THRESHOLD)
            .count();
        labels.insert(
            key.clone(),
            vec![[format_timestamp(ts[l]), format_timestamp(ts[r])]],
        );
        corpus.push(ScoredSeries {
            name: key,
            timestamps: ts.clone(),
            scores,
            windows: vec![(ts[l], ts[r])],
        });
    }
    if corpus.is_empty() {
        bail!("no background long enough (and varying) to inject into");
    }
    let labels_path = args.out.join("labels").join("combined_windows.json");
    std::fs::create_dir_all(labels_path.parent().unwrap_or(&args.out))?;
    std::fs::write(&labels_path, serde_json::to_string_pretty(&labels)?)
        .with_context(|| format!("writing {}", labels_path.display()))?;
    for (kind, rep) in &reports {
        let mut delays = rep.delays.clone();
        delays.sort_unstable();
        let median_delay = delays.get(delays.len() / 2).copied();
        if args.json {
            outln!(
                "{}",
                serde_json::json!({
                    "detector": "predictive",
                    "set": "injected",
                    "kind": kind.name(),
                    "series": rep.series,
                    "detected": rep.detected,
                    "kind_right": rep.kind_right,
                    "median_delay_samples": median_delay,
                    "false_alerts": rep.false_alerts,
                    "threshold": ALERT_THRESHOLD,
                })
            );
        } else {
            outln!(
                "{:<12} {}/{} windows detected at threshold {:.4}, kind right in {}, median delay {} samples, {} alerts outside the windows",
                kind.name(),
                rep.detected,
                rep.series,
                ALERT_THRESHOLD,
                rep.kind_right,
                median_delay.map_or("-".to_owned(), |d| d.to_string()),
                rep.false_alerts
            );
        }
    }
    for r in nab::score_all_profiles(&corpus).context("NAB scoring")? {
        print_profile(&r, "injected", corpus.len(), None, args.json);
    }
    for profile in nab::CostProfile::all() {
        let r = nab::score_corpus_at(&corpus, &profile, ALERT_THRESHOLD)?;
        print_profile(&r, "injected@alert", corpus.len(), None, args.json);
    }
    Ok(())
}

/// Writes a series as a canonical `timestamp,value` CSV at `root/<key>`.
fn write_series(root: &Path, input: &Input) -> anyhow::Result<()> {
    let path = root.join(&input.key);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let file =
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = std::io::BufWriter::new(file);
    writeln!(w, "timestamp,value")?;
    for (t, v) in input.timestamps.iter().zip(&input.values) {
        writeln!(w, "{},{v}", format_timestamp(*t))?;
    }
    w.flush()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(dirs: Vec<PathBuf>, out: PathBuf) -> Args {
        Args {
            dirs,
            out,
            labels: None,
            metric: "cpu".into(),
            cross_validate: false,
            inject: false,
            inject_len: 4032,
            resample: None,
            perturb: None,
            seed: 7,
            params: None,
            json: true,
        }
    }

    /// The windows follow a finer step when the samples are a finer sampling (every minute,
    /// or every minute with some lost), and the mean interval when they are bursts of events.
    #[test]
    fn windows_should_be_fitted_to_a_finer_step_only_when_samples_cover_it() {
        let probe = |intervals: &[i64]| -> Vec<i64> {
            std::iter::once(0)
                .chain(intervals.iter().scan(0, |t, d| {
                    *t += d;
                    Some(*t)
                }))
                .collect()
        };
        let fit = |intervals: &[i64]| {
            let ts = probe(intervals);
            let step = sampling_step(&ts).unwrap();
            (step, window_step(&ts, step))
        };
        assert_eq!(fit(&[60; 48]), (60, 60));
        assert_eq!(fit(&[300; 48]), (300, 300));
        assert_eq!(fit(&[3600; 48]), (3600, 3600));
        // A third of the one-minute samples lost, one in three.
        let lossy: Vec<i64> = (0..48).map(|i| if i % 3 == 2 { 120 } else { 60 }).collect();
        let (step, windows) = fit(&lossy);
        assert_eq!(windows, step);
        // Key presses: nine 10 s apart, then 45 minutes of nothing (a mean of about 4 minutes).
        let bursts: Vec<i64> = (0..48)
            .map(|i| if i % 10 == 9 { 2700 } else { 10 })
            .collect();
        let (step, windows) = fit(&bursts);
        assert_eq!(step, 10);
        let mean = (probe(&bursts)[48] as f64 / 48.0).round() as i64;
        assert_eq!(windows, mean);
        assert!(windows > 200, "{windows}");
        // Timestamps that never move forward over four intervals give no step: the windows
        // are left as they are, not fitted to the one row that jumped ahead.
        let stuck = [0, 100, 0, 0, 0, -1];
        assert_eq!(sampling_step(&stuck), None);
        assert_eq!(window_step(&stuck, 0), 0);
    }

    #[test]
    fn resampling_should_average_buckets_and_keep_gaps() {
        let input = Input {
            key: "d/f.csv".into(),
            timestamps: vec![0, 300, 600, 900, 1200, 1500, 5400, 5700],
            values: vec![1.0, 2.0, 3.0, 10.0, 20.0, 30.0, 7.0, 9.0],
        };
        let out = bucket_means(&input, 900);
        assert_eq!(out.timestamps, vec![0, 900, 5400]);
        assert_eq!(out.values, vec![2.0, 20.0, 8.0]);
        assert_eq!(out.key, "d/f.csv");
        // A bucket boundary falls on multiples of the step, wherever the series starts.
        let late = bucket_means(
            &Input {
                timestamps: vec![600, 900],
                values: vec![4.0, 6.0],
                ..input
            },
            900,
        );
        assert_eq!(
            (late.timestamps, late.values),
            (vec![0, 900], vec![4.0, 6.0])
        );
    }

    /// Collected metrics arrive a little early or late: a sample within half a step of its
    /// slot must score as if it had arrived on time (here one in eight is two fifths of a
    /// step early and the next as late, which measured from the previous sample is a gap).
    #[test]
    fn jittered_timestamps_should_score_as_punctual_ones() {
        let step = 300;
        let mut noise = predictive_engine::noise::XorShift::new(17);
        let n = 12 * 288;
        let values: Vec<f64> = (0..n)
            .map(|i| {
                let phase = (i % 288) as f64 / 288.0 * std::f64::consts::TAU;
                let peak = if i / 288 == 11 {
                    0.0
                } else {
                    60.0 * phase.sin()
                };
                100.0 + peak + 5.0 * noise.uniform()
            })
            .collect();
        let punctual: Vec<i64> = (0..n as i64).map(|i| i * step).collect();
        let jittered: Vec<i64> = punctual
            .iter()
            .enumerate()
            .map(|(i, t)| match i % 8 {
                3 => t - 120,
                4 => t + 120,
                _ => *t,
            })
            .collect();
        let p = DetectorParams::default();
        let on_time = score_series(&values, &punctual, &p).unwrap();
        assert_eq!(score_series(&values, &jittered, &p).unwrap(), on_time);
        assert!(
            on_time[11 * 288..].iter().any(|s| *s >= ALERT_THRESHOLD),
            "the day without its peak should alert"
        );
    }

    /// Online: a sample's score uses only the data up to its timestamp, so a series cut short
    /// scores its samples as the whole series does, even when its sampling changes later (here
    /// from 5 to 10 minutes after two days, which moves the median step of the whole series).
    #[test]
    fn a_series_cut_short_should_score_as_the_whole_series_does() {
        let mut noise = predictive_engine::noise::XorShift::new(23);
        let mut at = 0;
        let mut timestamps = Vec::new();
        for i in 0..2_000 {
            timestamps.push(at);
            at += if i < 576 { 300 } else { 600 };
        }
        let values: Vec<f64> = (0..timestamps.len())
            .map(|i| 50.0 + 10.0 * noise.uniform() + if i == 1_500 { 200.0 } else { 0.0 })
            .collect();
        let p = DetectorParams::default();
        let whole = score_series(&values, &timestamps, &p).unwrap();
        assert!(whole[..STEP_PROBE].iter().all(|s| *s == 0.0));
        assert!(whole[1_500] >= ALERT_THRESHOLD, "the spike should alert");
        for n in [10, STEP_PROBE, STEP_PROBE + 1, 700, 1_600] {
            let cut = score_series(&values[..n], &timestamps[..n], &p).unwrap();
            assert_eq!(cut, whole[..n], "the first {n} samples");
        }
    }

    #[test]
    fn a_bad_resampling_step_should_be_named() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data/set");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(
            data.join("a.csv"),
            "timestamp,value\n2014-01-01 00:00:00,1\n",
        )
        .unwrap();
        let mut a = args(vec![dir.path().join("data")], dir.path().join("out"));
        a.resample = Some("soon".into());
        let err = format!("{:#}", run(a).unwrap_err());
        assert!(err.contains("--resample") && err.contains("soon"), "{err}");
    }

    #[test]
    fn timestamps_should_format_as_nab_writes_them() {
        for s in [
            "1970-01-01 00:00:00",
            "2014-02-19 10:50:00",
            "2000-02-29 23:59:59",
            "2024-12-31 12:00:00",
        ] {
            let t = predictive_traces::parse_datetime(s).unwrap();
            assert_eq!(format_timestamp(t), s);
        }
    }

    #[test]
    fn keys_should_be_dataset_and_file_as_in_nab_labels() {
        assert_eq!(
            nab_key(Path::new("/x/nab/data/realTweets/Twitter_volume_AAPL.csv")),
            "realTweets/Twitter_volume_AAPL.csv"
        );
        assert_eq!(nab_key(Path::new("d/a.csv.gz")), "d/a.csv");
    }

    #[test]
    fn folds_should_split_every_dataset_in_halves() {
        let keys: Vec<String> = (0..7)
            .map(|i| format!("a/f{i}.csv"))
            .chain((0..4).map(|i| format!("b/g{i}.csv")))
            .collect();
        let f = folds(&keys);
        let count = |ds: &str, which: usize| {
            keys.iter()
                .zip(&f)
                .filter(|(k, x)| k.starts_with(ds) && **x == which)
                .count()
        };
        assert_eq!(count("a/", 0) + count("a/", 1), 7);
        assert!(count("a/", 0).abs_diff(count("a/", 1)) == 1);
        assert_eq!(count("b/", 0), 2);
        // Deterministic: the same names give the same folds.
        assert_eq!(folds(&keys), f);
    }

    fn wave_csv(n: i64, spike: Option<i64>) -> (String, i64) {
        let t0 = predictive_traces::parse_datetime("2024-01-01 00:00:00").unwrap();
        let mut csv = String::from("timestamp,value\n");
        for i in 0..n {
            let v = if Some(i) == spike {
                500.0
            } else {
                50.0 + 10.0 * ((i as f64) / 20.0).sin()
            };
            csv.push_str(&format!("{},{v}\n", format_timestamp(t0 + 300 * i)));
        }
        (csv, t0)
    }

    #[test]
    fn bench_should_write_nab_results_and_find_labels_beside_the_data() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data").join("synthetic");
        std::fs::create_dir_all(&data).unwrap();
        // 1000 five-minute samples of a slow wave with one spike at row 700.
        let (csv, t0) = wave_csv(1000, Some(700));
        std::fs::write(data.join("wave.csv"), csv).unwrap();
        let labels = root.path().join("labels");
        std::fs::create_dir_all(&labels).unwrap();
        let window = format!(
            r#"{{"synthetic/wave.csv": [["{}.000000", "{}.000000"]]}}"#,
            format_timestamp(t0 + 300 * 650),
            format_timestamp(t0 + 300 * 750)
        );
        std::fs::write(labels.join("combined_windows.json"), window).unwrap();
        let out = root.path().join("out");
        run(args(vec![root.path().join("data")], out.clone())).unwrap();
        let written = std::fs::read_to_string(out.join("synthetic").join("wave.csv")).unwrap();
        let mut lines = written.lines();
        assert_eq!(lines.next(), Some("timestamp,value,anomaly_score"));
        let rows: Vec<&str> = lines.collect();
        assert_eq!(rows.len(), 1000);
        assert!(
            rows[0].starts_with("2024-01-01 00:00:00,50,"),
            "{}",
            rows[0]
        );
        let scores: Vec<f64> = rows
            .iter()
            .map(|l| l.rsplit(',').next().unwrap().parse().unwrap())
            .collect();
        assert!(scores.iter().all(|s| (0.0..=1.0).contains(s)));
        assert!(scores[700] > 0.9, "spike scored {}", scores[700]);
        assert_eq!(
            find_labels(&[root.path().join("data")]),
            Some(labels.join("combined_windows.json"))
        );
    }

    /// Writes `csv` as `DIR/data/synthetic/wave.csv` and its one window (rows 650 to 750 of a
    /// 5-minute series from `t0`) as `DIR/windows.json`; returns the data directory and the
    /// labels.
    fn wave_corpus(dir: &Path, csv: &str, t0: i64) -> (PathBuf, PathBuf) {
        let data = dir.join("data");
        std::fs::create_dir_all(data.join("synthetic")).unwrap();
        std::fs::write(data.join("synthetic").join("wave.csv"), csv).unwrap();
        let labels = dir.join("windows.json");
        std::fs::write(
            &labels,
            format!(
                r#"{{"synthetic/wave.csv": [["{}.000000", "{}.000000"]]}}"#,
                format_timestamp(t0 + 300 * 650),
                format_timestamp(t0 + 300 * 750)
            ),
        )
        .unwrap();
        (data, labels)
    }

    /// A row stamped earlier than the one before it (a clock stepped back) must not stop the
    /// run or lose a row: every row is scored in file order, the output keeps its timestamp,
    /// and NAB's scoring places it at the time it arrived.
    #[test]
    fn a_row_that_goes_back_in_time_should_be_scored_in_file_order() {
        assert_eq!(
            arrival_times(&[0, 300, 100, 600, 600]),
            vec![0, 300, 300, 600, 600]
        );
        let root = tempfile::tempdir().unwrap();
        let (csv, t0) = wave_csv(1000, Some(700));
        let mut lines: Vec<String> = csv.lines().map(String::from).collect();
        // After row 400 (line 402 of the file), a row stamped as row 390 was.
        let back = format!("{},50", format_timestamp(t0 + 300 * 390));
        lines.insert(402, back.clone());
        let mut scores = Vec::new();
        for (name, text) in [("clean", csv.clone()), ("back", lines.join("\n") + "\n")] {
            let (data, labels) = wave_corpus(&root.path().join(name), &text, t0);
            let mut a = args(vec![data], root.path().join(name).join("out"));
            a.labels = Some(labels);
            run(a).unwrap();
            let written = std::fs::read_to_string(
                root.path()
                    .join(name)
                    .join("out")
                    .join("synthetic")
                    .join("wave.csv"),
            )
            .unwrap();
            let rows: Vec<String> = written.lines().skip(1).map(String::from).collect();
            scores.push(rows);
        }
        let (clean, back_rows) = (&scores[0], &scores[1]);
        assert_eq!(back_rows.len(), 1001);
        assert!(back_rows[401].starts_with(&back), "{}", back_rows[401]);
        // Online: the rows before it score as in the clean file.
        assert_eq!(&back_rows[..401], &clean[..401]);
        let score = |row: &str| row.rsplit(',').next().unwrap().parse::<f64>().unwrap();
        assert!(score(&back_rows[701]) > 0.9, "{}", back_rows[701]);
    }

    /// `--perturb irregular` scores a copy at other times, and its window moves with its rows:
    /// the spike is still inside it and found; a name that is no perturbation is an error
    /// naming it.
    #[test]
    fn a_perturbed_copy_should_be_scored_with_its_windows_moved() {
        let root = tempfile::tempdir().unwrap();
        let (csv, t0) = wave_csv(1000, Some(700));
        let (data, labels) = wave_corpus(root.path(), &csv, t0);
        let out = root.path().join("out");
        let mut a = args(vec![data.clone()], out.clone());
        a.labels = Some(labels.clone());
        a.perturb = Some("irregular".into());
        run(a).unwrap();
        let written = std::fs::read_to_string(out.join("synthetic").join("wave.csv")).unwrap();
        let rows: Vec<(i64, f64)> = written
            .lines()
            .skip(1)
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                (
                    predictive_traces::parse_datetime(f[0]).unwrap(),
                    f[2].parse().unwrap(),
                )
            })
            .collect();
        assert_eq!(rows.len(), 1000);
        // The copy's times are not the file's, and the spike (row 700) still alerts.
        assert!(rows
            .iter()
            .enumerate()
            .any(|(i, (t, _))| *t != t0 + 300 * i as i64));
        assert!(rows[700].1 > 0.9, "spike scored {}", rows[700].1);
        // Its window, moved with its rows, still holds it: scored, the window is found.
        let (original, _) = wave_csv(1000, Some(700));
        let mut inputs = vec![Input {
            key: "synthetic/wave.csv".into(),
            timestamps: (0..1000).map(|i| t0 + 300 * i).collect(),
            values: original
                .lines()
                .skip(1)
                .map(|l| l.rsplit(',').next().unwrap().parse().unwrap())
                .collect(),
        }];
        let moved = perturb_inputs(&mut inputs, Perturbation::Irregular, 7);
        assert_eq!(
            inputs[0].timestamps,
            rows.iter().map(|r| r.0).collect::<Vec<_>>()
        );
        let mut windows = read_windows(&labels).unwrap();
        move_windows(&mut windows, &moved);
        assert_eq!(
            windows["synthetic/wave.csv"],
            vec![(rows[650].0, rows[750].0)]
        );
        let scored = attach_windows(
            &inputs,
            vec![rows.iter().map(|r| r.1).collect()],
            &windows,
            &labels,
        )
        .unwrap();
        let r = nab::score_corpus(&scored, &nab::CostProfile::STANDARD).unwrap();
        assert_eq!(r.detected_windows, 1);

        let mut bad = args(vec![data], root.path().join("o2"));
        bad.perturb = Some("holes".into());
        let e = format!("{:#}", run(bad).unwrap_err());
        assert!(e.contains("--perturb") && e.contains("`holes`"), "{e}");
    }

    #[test]
    fn a_series_missing_from_the_labels_should_be_named() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("d");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("a.csv"), "timestamp,value\n1,1\n2,2\n").unwrap();
        let labels = root.path().join("w.json");
        std::fs::write(&labels, "{}").unwrap();
        let mut a = args(vec![data], root.path().join("o"));
        a.labels = Some(labels);
        let e = run(a).unwrap_err();
        assert!(format!("{e:#}").contains("d/a.csv"), "{e:#}");
    }

    #[test]
    fn a_bad_value_should_name_the_file_and_line() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("d");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("a.csv"), "timestamp,value\n1,1\n2,x\n").unwrap();
        let e = run(args(vec![data], root.path().join("o"))).unwrap_err();
        let msg = format!("{e:#}");
        assert!(msg.contains("a.csv:3"), "{msg}");
    }

    #[test]
    fn injected_mode_should_write_a_labelled_corpus_and_detect_bursts() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("bg");
        std::fs::create_dir_all(&data).unwrap();
        // Six noisy backgrounds of 2000 samples: kinds leak, burst, drop, level shift,
        // flatline, leak in turn.
        let mut seed = predictive_engine::noise::XorShift::new(99);
        for k in 0..6 {
            let t0 = predictive_traces::parse_datetime("2024-01-01 00:00:00").unwrap();
            let mut csv = String::from("timestamp,value\n");
            for i in 0..2000i64 {
                let noise = seed.uniform();
                let v = 50.0 + 10.0 * ((i as f64) / 40.0).sin() + 5.0 * noise;
                csv.push_str(&format!("{},{v}\n", format_timestamp(t0 + 300 * i)));
            }
            std::fs::write(data.join(format!("vm{k}.csv")), csv).unwrap();
        }
        let out = root.path().join("out");
        let mut a = args(vec![data], out.clone());
        a.inject = true;
        run(a).unwrap();
        let labels = read_windows(&out.join("labels").join("combined_windows.json")).unwrap();
        assert_eq!(labels.len(), 6);
        assert!(labels.keys().any(|k| k.starts_with("synthetic/burst_")));
        // The written corpus reads back through predictive-traces and its labels match.
        let back = load_inputs(&[out.join("data")], Metric::Cpu).unwrap();
        assert_eq!(back.len(), 6);
        assert!(out.join("results").join(&back[0].key).is_file());
        let burst = back
            .iter()
            .find(|i| i.key.starts_with("synthetic/burst_"))
            .unwrap();
        let (l, r) = labels[&burst.key][0];
        let scores =
            score_series(&burst.values, &burst.timestamps, &DetectorParams::default()).unwrap();
        let hit = burst
            .timestamps
            .iter()
            .zip(&scores)
            .any(|(t, s)| *t >= l && *t <= r && *s >= ALERT_THRESHOLD);
        assert!(hit, "the injected burst was not detected");
    }
}
