//! Building a [`Catalog`] from price source files, with validation counts.
//!
//! The builder is pure: the caller reads the files and hands their text over ([`SourceSet`]).
//! Price-API fetchers (in `predictive-clouds`, feature `price-api`) feed the same [`Builder`]
//! with [`TypeSpec`]s and [`PriceRow`]s, so every source goes through the same rules.
//!
//! # Validation rules (counts are reported per source)
//! - **Blank price**: that purchase option is absent there. A row with no usable price at all is
//!   rejected.
//! - **Unparsable, zero, negative or non-finite price**: the price is dropped (row repaired if
//!   another price is left, else rejected).
//! - **Currency and restricted partitions**: AWS `cn-*` prices are in CNY and there is no
//!   exchange-rate snapshot in the sources, so they are excluded rather than converted; AWS
//!   GovCloud (`us-gov-*`) needs a separate account and is excluded too. Rows rejected.
//! - **Unknown units**: prices must be per hour (monthly GCP committed prices are divided by
//!   730 h); API rows with another unit are rejected. Mac dedicated hosts (`*_mac` architectures)
//!   are billed per host with a 24 h minimum, not per instance-hour: rejected. `i386` is repaired
//!   to `x86_64`.
//! - **Spot above on-demand**: the spot price is dropped (repaired); spot equal to on-demand is kept.
//! - **Duplicates**: a second row with the same (type, region, zone) in one source is rejected;
//!   per-zone AWS rows are merged per region (on-demand must agree; spot is the median over zones).
//!   Where two sources price the same AWS type and region on demand, `aws_karpenter` wins
//!   (dated snapshot) and the other price is counted as superseded (repaired).
//! - **Specs**: a type without positive vCPU and memory is rejected.

use std::collections::{BTreeMap, HashMap};

use super::catalog::{
    Arch, Catalog, Cloud, InstanceType, Offer, Purchase, Region, SourceInfo, HOURS_PER_MONTH,
};
use super::{Error, Result};

/// The text of one source file and the path it came from (for error messages).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SourceText {
    /// The path, as shown in errors.
    pub path: String,
    /// The file's content.
    pub text: String,
}

/// The source files the builder knows, by layout of `../shared/data/prices` (any may be absent).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SourceSet {
    /// `aws_karpenter/ec2_instance_specs.csv`.
    pub aws_karpenter_specs: Option<SourceText>,
    /// `aws_karpenter/ec2_ondemand_prices.csv`.
    pub aws_karpenter_prices: Option<SourceText>,
    /// `aws_skypilot/vms.csv`.
    pub aws_skypilot: Option<SourceText>,
    /// `azure_skypilot/vms.csv`.
    pub azure_skypilot: Option<SourceText>,
    /// `gcp_cyclenerd/gcp_compute_instance_prices_flat.csv`.
    pub gcp_flat: Option<SourceText>,
    /// The first lines of `gcp_cyclenerd/pricing.yml` (its `generated:` date is the snapshot).
    pub gcp_pricing_header: Option<String>,
    /// `SOURCE.md` of each source directory, by directory name (commit ids where no date is known).
    pub source_notes: BTreeMap<String, String>,
}

/// The resources of one instance type, as a source states them.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeSpec {
    /// Cloud.
    pub cloud: Cloud,
    /// Type name.
    pub name: String,
    /// Family, or None to derive it from the name.
    pub family: Option<String>,
    /// Architecture.
    pub arch: Arch,
    /// vCPUs.
    pub vcpu: f64,
    /// Memory GiB.
    pub mem_gib: f64,
    /// GPUs.
    pub gpu: f64,
    /// GPU model.
    pub gpu_model: Option<String>,
    /// GPU memory GiB (total).
    pub gpu_mem_gib: f64,
    /// Network Gbit/s where known.
    pub network_gbps: Option<f64>,
}

/// One price row: a type in a region, bought one way.
#[derive(Debug, Clone, PartialEq)]
pub struct PriceRow {
    /// Cloud.
    pub cloud: Cloud,
    /// Type name.
    pub instance_type: String,
    /// Region code.
    pub region: String,
    /// Purchase option.
    pub purchase: Purchase,
    /// USD per hour.
    pub usd_per_hour: f64,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    rows: u64,
    accepted: u64,
    repaired: u64,
    rejected: u64,
}

/// The prices of one (cloud, type, region) in [`pidx`] order (on-demand, spot, 1y, 3y), each
/// with the index of the source that set it.
type PriceSlots = [Option<(f64, u8)>; 4];

/// The rows of one (type, region) of the SkyPilot AWS source merged over zones: (on-demand
/// price, spot prices, rows, repaired rows, whether the on-demand prices disagree).
type SkypilotGroup = (Option<f64>, Vec<f64>, u64, u64, bool);

/// Accumulates types and prices from several sources, then assembles a [`Catalog`].
#[derive(Debug, Default)]
pub struct Builder {
    types: BTreeMap<(Cloud, String), TypeSpec>,
    // (cloud, type, region) -> [od, spot, 1y, 3y] with the source that set each
    prices: BTreeMap<(Cloud, String, String), PriceSlots>,
    sources: Vec<(SourceInfo, Counts)>,
}

fn pidx(p: Purchase) -> usize {
    match p {
        Purchase::OnDemand => 0,
        Purchase::Spot => 1,
        Purchase::Reserved1y => 2,
        Purchase::Reserved3y => 3,
    }
}

/// Derives the family of a type name: AWS `m5.large` → `m5`; GCP `n2-standard-2` → `n2`;
/// Azure `Standard_D2s_v5` → `Dsv5` (the series: the size's letters without the vCPU count,
/// then the remaining parts).
pub fn family_of(cloud: Cloud, name: &str) -> String {
    match cloud {
        Cloud::Aws => name.split('.').next().unwrap_or(name).to_string(),
        Cloud::Gcp => name.split('-').next().unwrap_or(name).to_string(),
        Cloud::Azure => {
            let rest = name
                .strip_prefix("Standard_")
                .or_else(|| name.strip_prefix("Basic_"))
                .unwrap_or(name);
            let mut parts = rest.split('_');
            let first: String = parts
                .next()
                .unwrap_or("")
                .chars()
                .filter(|c| !c.is_ascii_digit() && *c != '-')
                .collect();
            let mut fam = first;
            for p in parts {
                if p != "Promo" {
                    fam.push_str(p);
                }
            }
            fam
        }
    }
}

/// Whether a type is burstable or shared-core (left out by default, see `PROTOCOL.md` §4).
pub fn is_burstable(cloud: Cloud, name: &str) -> bool {
    match cloud {
        Cloud::Aws => {
            name.starts_with('t') && name.as_bytes().get(1).is_some_and(u8::is_ascii_digit)
        }
        // A0 is shared-core like the Basic tier.
        Cloud::Azure => {
            name.starts_with("Basic_") || name.starts_with("Standard_B") || name == "Standard_A0"
        }
        Cloud::Gcp => matches!(
            name,
            "e2-micro" | "e2-small" | "e2-medium" | "f1-micro" | "g1-small"
        ),
    }
}

/// Whether a type is a promotional or retired SKU (left out by default): Azure `*_Promo`, and
/// the first-generation A series (`Standard_A1` … `Standard_A11`, retired in 2024; `_v2` stays).
pub fn is_promo_or_retired(cloud: Cloud, name: &str) -> bool {
    cloud == Cloud::Azure
        && (name.contains("_Promo")
            || name
                .strip_prefix("Standard_A")
                .is_some_and(|rest| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit())))
}

/// Azure ARM sizes carry a `p` among the letters after the vCPU count (`D2ps_v5`, `E4pds_v5`).
fn azure_arch(name: &str) -> Arch {
    let rest = name.strip_prefix("Standard_").unwrap_or(name);
    let first = rest.split('_').next().unwrap_or("");
    let after_digits: String = first
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .skip_while(|c| c.is_ascii_digit() || *c == '-')
        .collect();
    if after_digits.contains('p') {
        Arch::Arm64
    } else {
        Arch::X86_64
    }
}

fn gcp_arch(name: &str) -> Arch {
    match family_of(Cloud::Gcp, name).as_str() {
        "t2a" | "c4a" | "n4a" => Arch::Arm64,
        _ => Arch::X86_64,
    }
}

fn is_aws_gpu(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    !(n.is_empty()
        || n.contains("inferentia")
        || n.contains("trainium")
        || n.contains("gaudi")
        || n.contains("xilinx")
        || n.contains("fpga"))
}

/// Splits one CSV line (RFC 4180 quoting, no embedded newlines) with `sep`.
fn split_csv(line: &str, sep: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    cur.push('"');
                    chars.next();
                } else {
                    quoted = false;
                }
            } else {
                cur.push(c);
            }
        } else if c == '"' {
            quoted = true;
        } else if c == sep {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    out.push(cur);
    out
}

/// A parsed CSV: header index and rows with their 1-based line numbers.
struct Csv<'a> {
    file: &'a str,
    header: HashMap<String, usize>,
    rows: Vec<(usize, Vec<String>)>,
}

impl<'a> Csv<'a> {
    fn parse(src: &'a SourceText, sep: char) -> Result<Csv<'a>> {
        let mut lines = src.text.lines().enumerate();
        let Some((_, head)) = lines.next() else {
            return Err(Error::SourceInvalid {
                file: src.path.clone(),
                line: 0,
                reason: "empty file".into(),
            });
        };
        let header = split_csv(head.trim_end_matches('\r'), sep)
            .into_iter()
            .enumerate()
            .map(|(i, h)| (h.trim().to_string(), i))
            .collect();
        let rows = lines
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| (i + 1, split_csv(l.trim_end_matches('\r'), sep)))
            .collect();
        Ok(Csv {
            file: &src.path,
            header,
            rows,
        })
    }

    fn col(&self, name: &str) -> Result<usize> {
        self.header
            .get(name)
            .copied()
            .ok_or_else(|| Error::SourceInvalid {
                file: self.file.to_string(),
                line: 1,
                reason: format!("missing column `{name}`"),
            })
    }
}

fn get(row: &[String], i: usize) -> &str {
    row.get(i).map(|s| s.trim()).unwrap_or("")
}

/// A price field: `Ok(None)` when blank, `Err(())` when present but unusable.
fn price_field(s: &str) -> std::result::Result<Option<f64>, ()> {
    if s.is_empty() {
        return Ok(None);
    }
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => {
            let r = (v * 1e6).round() / 1e6;
            if r > 0.0 {
                Ok(Some(r))
            } else {
                Err(())
            }
        }
        _ => Err(()),
    }
}

/// Drops a spot price above the on-demand one (a stale or mis-read row: spot is never
/// dearer); says whether it did.
fn drop_spot_above_on_demand(on_demand: Option<f64>, spot: &mut Option<f64>) -> bool {
    let above = matches!((on_demand, *spot), (Some(o), Some(s)) if s > o);
    if above {
        *spot = None;
    }
    above
}

fn num(s: &str) -> Option<f64> {
    s.parse::<f64>().ok().filter(|v| v.is_finite())
}

fn restricted_aws_region(r: &str) -> bool {
    r.starts_with("cn-") || r.starts_with("us-gov-")
}

fn first_date(text: &str) -> Option<String> {
    let b = text.as_bytes();
    (0..b.len().saturating_sub(9)).find_map(|i| {
        let s = &text.get(i..i + 10)?;
        let ok = s.chars().enumerate().all(|(k, c)| {
            if k == 4 || k == 7 {
                c == '-'
            } else {
                c.is_ascii_digit()
            }
        });
        ok.then(|| s.to_string())
    })
}

fn commit_of(text: &str) -> Option<String> {
    for line in text
        .lines()
        .filter(|l| l.to_ascii_lowercase().contains("commit"))
    {
        // The first back-quoted hexadecimal id of 7+ characters on a line that mentions a commit.
        for (k, seg) in line.split('`').enumerate() {
            if k % 2 == 1 && seg.len() >= 7 && seg.chars().all(|c| c.is_ascii_hexdigit()) {
                return Some(format!("commit {}", &seg[..8.min(seg.len())]));
            }
        }
    }
    None
}

/// Parses the `generated: Thu Jul 30 06:13:17 2026` line of the GCP pricing.yml header.
fn gcp_generated(header: &str) -> Option<String> {
    let line = header
        .lines()
        .find(|l| l.trim_start().starts_with("generated:"))?;
    let f: Vec<&str> = line.split_whitespace().collect();
    // generated: Thu Jul 30 06:13:17 2026
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let mon = *f.get(2)?;
    let m = months.iter().position(|x| *x == mon)? + 1;
    let d: u32 = f.get(3)?.parse().ok()?;
    let y: u32 = f.get(5)?.parse().ok()?;
    Some(format!("{y:04}-{m:02}-{d:02}"))
}

impl Builder {
    /// An empty builder.
    pub fn new() -> Builder {
        Builder::default()
    }

    /// Starts a source; later rows are counted against it. Returns its id.
    pub fn begin_source(&mut self, name: &str, snapshot: &str, note: &str) -> u8 {
        self.sources.push((
            SourceInfo {
                name: name.into(),
                snapshot: snapshot.into(),
                rows: 0,
                accepted: 0,
                repaired: 0,
                rejected: 0,
                note: note.into(),
            },
            Counts::default(),
        ));
        (self.sources.len() - 1) as u8
    }

    fn count(&mut self, src: u8, f: impl FnOnce(&mut Counts)) {
        if let Some((_, c)) = self.sources.get_mut(src as usize) {
            f(c);
        }
    }

    /// Counts one row of source `src` as rejected (nothing of it kept), repaired (kept after a
    /// fix) or accepted.
    fn tally(&mut self, src: u8, kept: bool, repaired: bool) {
        self.count(src, |c| {
            if !kept {
                c.rejected += 1
            } else if repaired {
                c.repaired += 1
            } else {
                c.accepted += 1
            }
        });
    }

    /// Adds or completes a type's specs. Specs already present win (add the preferred source first),
    /// except that missing network bandwidth and GPU memory are filled in.
    pub fn add_type(&mut self, spec: TypeSpec) {
        let key = (spec.cloud, spec.name.clone());
        match self.types.get_mut(&key) {
            Some(old) => {
                if old.network_gbps.is_none() {
                    old.network_gbps = spec.network_gbps;
                }
                if old.gpu_mem_gib == 0.0 {
                    old.gpu_mem_gib = spec.gpu_mem_gib;
                }
            }
            None => {
                self.types.insert(key, spec);
            }
        }
    }

    /// Seeds the builder with the instance types of an existing catalog, so that price rows from
    /// APIs that carry no specs (Azure Retail Prices, GCP per-resource SKUs) can be placed.
    pub fn add_catalog_types(&mut self, catalog: &Catalog) {
        for t in catalog.types() {
            self.add_type(TypeSpec {
                cloud: t.cloud,
                name: t.name.clone(),
                family: Some(t.family.clone()),
                arch: t.arch,
                vcpu: t.vcpu,
                mem_gib: t.mem_gib,
                gpu: t.gpu,
                gpu_model: t.gpu_model.clone(),
                gpu_mem_gib: t.gpu_mem_gib,
                network_gbps: t.network_gbps,
            });
        }
    }

    /// Adds one price row counted against source `src` (see the module docs for the rules).
    /// Returns whether the price was kept.
    pub fn add_price(&mut self, src: u8, row: PriceRow) -> bool {
        self.count(src, |c| c.rows += 1);
        if !(row.usd_per_hour.is_finite() && row.usd_per_hour > 0.0)
            || (row.cloud == Cloud::Aws && restricted_aws_region(&row.region))
        {
            self.count(src, |c| c.rejected += 1);
            return false;
        }
        let slot = self
            .prices
            .entry((row.cloud, row.instance_type, row.region))
            .or_default();
        let i = pidx(row.purchase);
        if slot[i].is_some() {
            self.count(src, |c| c.rejected += 1);
            return false;
        }
        slot[i] = Some(((row.usd_per_hour * 1e6).round() / 1e6, src));
        self.count(src, |c| c.accepted += 1);
        true
    }

    fn set_prices(
        &mut self,
        key: (Cloud, String, String),
        p: [Option<f64>; 4],
        src: u8,
    ) -> (bool, bool) {
        // Returns (kept anything, superseded something).
        let slot = self.prices.entry(key).or_default();
        let mut kept = false;
        let mut superseded = false;
        for i in 0..4 {
            if let Some(v) = p[i] {
                if slot[i].is_some() {
                    superseded = true;
                } else {
                    slot[i] = Some((v, src));
                    kept = true;
                }
            }
        }
        (kept, superseded)
    }

    /// Reads every source present in `set`, in order of preference: aws_karpenter, aws_skypilot,
    /// azure_skypilot, gcp_cyclenerd.
    ///
    /// # Errors
    /// [`Error::SourceInvalid`] when a file misses a required column.
    pub fn add_sources(&mut self, set: &SourceSet) -> Result<()> {
        let note = |k: &str| set.source_notes.get(k).cloned().unwrap_or_default();
        if set.aws_karpenter_specs.is_some() || set.aws_karpenter_prices.is_some() {
            let mut snapshot = String::new();
            if let Some(p) = &set.aws_karpenter_prices {
                let csv = Csv::parse(p, ',')?;
                let (cr, ct, cp, cg) = (
                    csv.col("region")?,
                    csv.col("instance_type")?,
                    csv.col("ondemand_linux_usd_per_hour")?,
                    csv.col("generated_at")?,
                );
                for (_, r) in &csv.rows {
                    if get(r, cr) == "us-east-1" {
                        let g = get(r, cg);
                        if g.len() >= 10 && g[..10] > *snapshot.as_str() {
                            snapshot = g[..10].to_string();
                        }
                    }
                }
                if snapshot.is_empty() {
                    snapshot =
                        first_date(&note("aws_karpenter")).unwrap_or_else(|| "unknown".into());
                }
                let src = self.begin_source("aws_karpenter", &snapshot, "EC2 specs and us-east-1 on-demand Linux prices; cn-* (CNY) and us-gov-* excluded");
                if let Some(s) = &set.aws_karpenter_specs {
                    self.add_karpenter_specs(s)?;
                }
                for (_, r) in &csv.rows {
                    self.count(src, |c| c.rows += 1);
                    let region = get(r, cr);
                    if restricted_aws_region(region) {
                        self.count(src, |c| c.rejected += 1);
                        continue;
                    }
                    match price_field(get(r, cp)) {
                        Ok(Some(v)) => {
                            let (kept, _) = self.set_prices(
                                (Cloud::Aws, get(r, ct).to_string(), region.to_string()),
                                [Some(v), None, None, None],
                                src,
                            );
                            self.count(src, |c| {
                                if kept {
                                    c.accepted += 1
                                } else {
                                    c.rejected += 1
                                }
                            });
                        }
                        _ => self.count(src, |c| c.rejected += 1),
                    }
                }
            } else if let Some(s) = &set.aws_karpenter_specs {
                self.add_karpenter_specs(s)?;
            }
        }
        if let Some(s) = &set.aws_skypilot {
            self.add_skypilot_aws(s, &note("aws_skypilot"))?;
        }
        if let Some(s) = &set.azure_skypilot {
            self.add_skypilot_azure(s, &note("azure_skypilot"))?;
        }
        if let Some(s) = &set.gcp_flat {
            let snap = set
                .gcp_pricing_header
                .as_deref()
                .and_then(gcp_generated)
                .or_else(|| first_date(&note("gcp_cyclenerd")))
                .unwrap_or_else(|| "unknown".into());
            self.add_gcp_flat(s, &snap)?;
        }
        Ok(())
    }

    fn add_karpenter_specs(&mut self, s: &SourceText) -> Result<()> {
        let csv = Csv::parse(s, ',')?;
        let c_name = csv.col("instance_type")?;
        let c_cpu = csv.col("instance-cpu")?;
        let c_mem = csv.col("instance-memory")?;
        let c_arch = csv.col("arch")?;
        let c_fam = csv.col("instance-family")?;
        let c_net = csv.col("instance-network-bandwidth")?;
        let c_gpu = csv.col("instance-gpu-count")?;
        let c_gname = csv.col("instance-gpu-name")?;
        let c_gmem = csv.col("instance-gpu-memory")?;
        for (_, r) in &csv.rows {
            let (Some(cpu), Some(mem)) = (num(get(r, c_cpu)), num(get(r, c_mem))) else {
                continue;
            };
            if cpu <= 0.0 || mem <= 0.0 {
                continue;
            }
            let Ok(arch) = get(r, c_arch).parse::<Arch>() else {
                continue;
            };
            let gpu = num(get(r, c_gpu)).unwrap_or(0.0);
            let name = get(r, c_name).to_string();
            self.add_type(TypeSpec {
                cloud: Cloud::Aws,
                family: Some(get(r, c_fam).to_string()).filter(|f| !f.is_empty()),
                arch,
                vcpu: cpu,
                mem_gib: mem / 1024.0,
                gpu,
                gpu_model: (gpu > 0.0)
                    .then(|| get(r, c_gname).to_ascii_uppercase())
                    .filter(|s| !s.is_empty()),
                gpu_mem_gib: if gpu > 0.0 {
                    num(get(r, c_gmem)).unwrap_or(0.0) / 1024.0
                } else {
                    0.0
                },
                network_gbps: num(get(r, c_net)).filter(|v| *v > 0.0).map(|v| v / 1000.0),
                name,
            });
        }
        Ok(())
    }

    fn add_skypilot_aws(&mut self, s: &SourceText, note: &str) -> Result<()> {
        let csv = Csv::parse(s, ',')?;
        let (ct, can, cac, ccpu, cmem, cgi, cp, csp, cr, caz, carch) = (
            csv.col("InstanceType")?,
            csv.col("AcceleratorName")?,
            csv.col("AcceleratorCount")?,
            csv.col("vCPUs")?,
            csv.col("MemoryGiB")?,
            csv.col("GpuInfo")?,
            csv.col("Price")?,
            csv.col("SpotPrice")?,
            csv.col("Region")?,
            csv.col("AvailabilityZone")?,
            csv.col("Arch")?,
        );
        let snap = commit_of(note).unwrap_or_else(|| "unknown".into());
        let src = self.begin_source(
            "aws_skypilot",
            &snap,
            "all commercial regions, on-demand per region, spot = median over zones",
        );
        let mut seen = std::collections::HashSet::new();
        // (type, region) -> (on-demand, spots, rows, repaired)
        let mut groups: BTreeMap<(String, String), SkypilotGroup> = BTreeMap::new();
        for (_, r) in &csv.rows {
            self.count(src, |c| c.rows += 1);
            let (t, region, az) = (get(r, ct), get(r, cr), get(r, caz));
            if !seen.insert((t.to_string(), region.to_string(), az.to_string()))
                || restricted_aws_region(region)
            {
                self.count(src, |c| c.rejected += 1);
                continue;
            }
            let mut repaired = false;
            let arch = match get(r, carch) {
                "x86_64" => Arch::X86_64,
                "arm64" => Arch::Arm64,
                "i386" => {
                    repaired = true;
                    Arch::X86_64
                }
                _ => {
                    self.count(src, |c| c.rejected += 1);
                    continue;
                }
            };
            let od = price_field(get(r, cp));
            let sp = price_field(get(r, csp));
            if od.is_err() || sp.is_err() {
                repaired = true;
            }
            let (od, mut sp) = (od.unwrap_or(None), sp.unwrap_or(None));
            if drop_spot_above_on_demand(od, &mut sp) {
                repaired = true;
            }
            if od.is_none() && sp.is_none() {
                self.count(src, |c| c.rejected += 1);
                continue;
            }
            let (Some(cpu), Some(mem)) = (num(get(r, ccpu)), num(get(r, cmem))) else {
                self.count(src, |c| c.rejected += 1);
                continue;
            };
            if cpu <= 0.0 || mem <= 0.0 {
                self.count(src, |c| c.rejected += 1);
                continue;
            }
            let an = get(r, can);
            let gpu = if is_aws_gpu(an) {
                num(get(r, cac)).unwrap_or(0.0)
            } else {
                0.0
            };
            let gi = get(r, cgi);
            let gmem = gi
                .find("TotalGpuMemoryInMiB': ")
                .and_then(|p| gi[p + 22..].split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|x| x.parse::<f64>().ok())
                .map(|m| m / 1024.0)
                .unwrap_or(0.0);
            self.add_type(TypeSpec {
                cloud: Cloud::Aws,
                name: t.to_string(),
                family: None,
                arch,
                vcpu: cpu,
                mem_gib: mem,
                gpu,
                gpu_model: (gpu > 0.0).then(|| an.to_string()),
                gpu_mem_gib: if gpu > 0.0 { gmem } else { 0.0 },
                network_gbps: None,
            });
            let g = groups
                .entry((t.to_string(), region.to_string()))
                .or_insert((None, Vec::new(), 0, 0, false));
            if let Some(o) = od {
                match g.0 {
                    None => g.0 = Some(o),
                    Some(prev) if (prev - o).abs() > 1e-9 => g.4 = true,
                    _ => {}
                }
            }
            if let Some(s) = sp {
                g.1.push(s);
            }
            g.2 += 1;
            if repaired {
                g.3 += 1;
            }
        }
        for ((t, region), (od, mut spots, rows, rep, _conflict)) in groups {
            spots.sort_by(f64::total_cmp);
            let spot = if spots.is_empty() {
                None
            } else {
                let m = spots.len();
                let med = if m % 2 == 1 {
                    spots[m / 2]
                } else {
                    0.5 * (spots[m / 2 - 1] + spots[m / 2])
                };
                Some((med * 1e6).round() / 1e6)
            };
            let (kept, superseded) =
                self.set_prices((Cloud::Aws, t, region), [od, spot, None, None], src);
            let rep = if superseded { rows } else { rep };
            self.count(src, |c| {
                if kept || superseded {
                    c.repaired += rep;
                    c.accepted += rows - rep;
                } else {
                    c.rejected += rows;
                }
            });
        }
        Ok(())
    }

    fn add_skypilot_azure(&mut self, s: &SourceText, note: &str) -> Result<()> {
        let csv = Csv::parse(s, ',')?;
        let (ct, can, cac, ccpu, cmem, cp, csp, cr) = (
            csv.col("InstanceType")?,
            csv.col("AcceleratorName")?,
            csv.col("AcceleratorCount")?,
            csv.col("vCPUs")?,
            csv.col("MemoryGiB")?,
            csv.col("Price")?,
            csv.col("SpotPrice")?,
            csv.col("Region")?,
        );
        let snap = commit_of(note).unwrap_or_else(|| "unknown".into());
        let src = self.begin_source(
            "azure_skypilot",
            &snap,
            "9 US regions, pay-as-you-go and spot; frozen schema-v6 snapshot",
        );
        for (_, r) in &csv.rows {
            self.count(src, |c| c.rows += 1);
            let t = get(r, ct);
            let mut repaired = false;
            let od = price_field(get(r, cp));
            let sp = price_field(get(r, csp));
            if od.is_err() || sp.is_err() {
                repaired = true;
            }
            let (od, mut sp) = (od.unwrap_or(None), sp.unwrap_or(None));
            if drop_spot_above_on_demand(od, &mut sp) {
                repaired = true;
            }
            let (Some(cpu), Some(mem)) = (num(get(r, ccpu)), num(get(r, cmem))) else {
                self.count(src, |c| c.rejected += 1);
                continue;
            };
            if (od.is_none() && sp.is_none()) || cpu <= 0.0 || mem <= 0.0 {
                self.count(src, |c| c.rejected += 1);
                continue;
            }
            let gpu = num(get(r, cac)).unwrap_or(0.0);
            let an = get(r, can);
            self.add_type(TypeSpec {
                cloud: Cloud::Azure,
                name: t.to_string(),
                family: None,
                arch: azure_arch(t),
                vcpu: cpu,
                mem_gib: mem,
                gpu: if an.is_empty() { 0.0 } else { gpu },
                gpu_model: (!an.is_empty() && gpu > 0.0).then(|| an.to_string()),
                gpu_mem_gib: 0.0,
                network_gbps: None,
            });
            let (kept, _) = self.set_prices(
                (Cloud::Azure, t.to_string(), get(r, cr).to_string()),
                [od, sp, None, None],
                src,
            );
            self.tally(src, kept, repaired);
        }
        Ok(())
    }

    fn add_gcp_flat(&mut self, s: &SourceText, snapshot: &str) -> Result<()> {
        let csv = Csv::parse(s, ',')?;
        let (ct, ccpu, cmem, cgt, cgc, cr, ch, chs, c1, c3) = (
            csv.col("machine_type")?,
            csv.col("vcpu")?,
            csv.col("memory_gb")?,
            csv.col("gpu_type")?,
            csv.col("gpu_count")?,
            csv.col("region")?,
            csv.col("hour")?,
            csv.col("hour_spot")?,
            csv.col("month_1y")?,
            csv.col("month_3y")?,
        );
        let src = self.begin_source(
            "gcp_cyclenerd",
            snapshot,
            "Compute Engine from the Cloud Billing Catalog; 1y/3y committed-use = monthly / 730 h",
        );
        for (_, r) in &csv.rows {
            self.count(src, |c| c.rows += 1);
            let t = get(r, ct);
            let mut repaired = false;
            let mut field = |i: usize, div: f64| match price_field(get(r, i)) {
                Ok(v) => v
                    .map(|x| ((x / div) * 1e6).round() / 1e6)
                    .filter(|x| *x > 0.0),
                Err(()) => {
                    repaired = true;
                    None
                }
            };
            let od = field(ch, 1.0);
            let mut sp = field(chs, 1.0);
            let r1 = field(c1, HOURS_PER_MONTH);
            let r3 = field(c3, HOURS_PER_MONTH);
            if drop_spot_above_on_demand(od, &mut sp) {
                repaired = true;
            }
            let (Some(cpu), Some(mem)) = (num(get(r, ccpu)), num(get(r, cmem))) else {
                self.count(src, |c| c.rejected += 1);
                continue;
            };
            if (od.is_none() && sp.is_none() && r1.is_none() && r3.is_none())
                || cpu <= 0.0
                || mem <= 0.0
            {
                self.count(src, |c| c.rejected += 1);
                continue;
            }
            let gpu = num(get(r, cgc)).unwrap_or(0.0);
            let gt = get(r, cgt);
            self.add_type(TypeSpec {
                cloud: Cloud::Gcp,
                name: t.to_string(),
                family: None,
                arch: gcp_arch(t),
                vcpu: cpu,
                mem_gib: mem,
                gpu: if gt.is_empty() { 0.0 } else { gpu },
                gpu_model: (!gt.is_empty() && gpu > 0.0).then(|| gt.to_ascii_uppercase()),
                gpu_mem_gib: 0.0,
                network_gbps: None,
            });
            let (kept, _) = self.set_prices(
                (Cloud::Gcp, t.to_string(), get(r, cr).to_string()),
                [od, sp, r1, r3],
                src,
            );
            self.tally(src, kept, repaired);
        }
        Ok(())
    }

    /// Assembles the catalog. Prices of types without specs are dropped (counted as rejected
    /// against the source that gave them); spot above on-demand across sources is dropped; types
    /// with no price in any region are left out (the catalog lists priced types only).
    ///
    /// # Errors
    /// [`Error::SourceInvalid`] when nothing usable was added.
    pub fn finish(self, version: Option<&str>) -> Result<Catalog> {
        self.finish_counted(version).map(|(c, _)| c)
    }

    /// [`Builder::finish`], also returning how many instance types with specs but no price were
    /// left out (e.g. the embedded types seeded by [`Builder::add_catalog_types`] that a price
    /// API did not price).
    ///
    /// # Errors
    /// [`Error::SourceInvalid`] when nothing usable was added.
    pub fn finish_counted(mut self, version: Option<&str>) -> Result<(Catalog, usize)> {
        let mut types = Vec::new();
        let mut tindex: HashMap<(Cloud, String), u32> = HashMap::new();
        for ((cloud, name), spec) in &self.types {
            if !(spec.vcpu > 0.0 && spec.mem_gib > 0.0) {
                continue;
            }
            tindex.insert((*cloud, name.clone()), types.len() as u32);
            types.push(InstanceType {
                cloud: *cloud,
                name: name.clone(),
                family: spec
                    .family
                    .clone()
                    .unwrap_or_else(|| family_of(*cloud, name)),
                arch: spec.arch,
                vcpu: spec.vcpu,
                mem_gib: (spec.mem_gib * 1e4).round() / 1e4,
                gpu: spec.gpu,
                gpu_model: spec.gpu_model.clone(),
                gpu_mem_gib: (spec.gpu_mem_gib * 1e3).round() / 1e3,
                network_gbps: spec.network_gbps,
                burstable: is_burstable(*cloud, name),
                promo: is_promo_or_retired(*cloud, name),
            });
        }
        let mut regions: Vec<Region> = Vec::new();
        let mut rindex: HashMap<(Cloud, String), u32> = HashMap::new();
        let mut offers = Vec::new();
        let prices = std::mem::take(&mut self.prices);
        for ((cloud, t, r), p) in prices {
            let Some(&ti) = tindex.get(&(cloud, t)) else {
                for (_, src) in p.iter().flatten() {
                    self.count(*src, |c| {
                        c.rejected += 1;
                        c.accepted = c.accepted.saturating_sub(1);
                    });
                }
                continue;
            };
            let ri = *rindex.entry((cloud, r.clone())).or_insert_with(|| {
                regions.push(Region {
                    cloud,
                    name: r.clone(),
                });
                (regions.len() - 1) as u32
            });
            let mut v: [Option<f64>; 4] = [
                p[0].map(|x| x.0),
                p[1].map(|x| x.0),
                p[2].map(|x| x.0),
                p[3].map(|x| x.0),
            ];
            drop_spot_above_on_demand(v[0], &mut v[1]);
            offers.push(Offer {
                type_index: ti,
                region_index: ri,
                on_demand: v[0],
                spot: v[1],
                reserved_1y: v[2],
                reserved_3y: v[3],
            });
        }
        if offers.is_empty() {
            return Err(Error::SourceInvalid {
                file: "(all sources)".into(),
                line: 0,
                reason: "no usable price row".into(),
            });
        }
        // Only priced types: renumber the types that have at least one offer.
        let mut new_index = vec![u32::MAX; types.len()];
        for o in &offers {
            new_index[o.type_index as usize] = 0;
        }
        let mut kept = 0u32;
        for v in new_index.iter_mut() {
            if *v == 0 {
                *v = kept;
                kept += 1;
            }
        }
        let unpriced = types.len() - kept as usize;
        let types: Vec<InstanceType> = types
            .into_iter()
            .zip(&new_index)
            .filter(|(_, &i)| i != u32::MAX)
            .map(|(t, _)| t)
            .collect();
        for o in &mut offers {
            o.type_index = new_index[o.type_index as usize];
        }
        let sources: Vec<SourceInfo> = self
            .sources
            .into_iter()
            .map(|(mut s, c)| {
                s.rows = c.rows;
                s.accepted = c.accepted;
                s.repaired = c.repaired;
                s.rejected = c.rejected;
                s
            })
            .collect();
        let newest = sources
            .iter()
            .filter_map(|s| first_date(&s.snapshot))
            .max()
            .unwrap_or_else(|| "undated".into());
        let version = version
            .map(str::to_string)
            .unwrap_or_else(|| format!("{newest}.1"));
        Ok((
            Catalog::new(version, sources, regions, types, offers)?,
            unpriced,
        ))
    }
}

/// Builds a catalog from the source files in `set` (see the module docs for the rules).
///
/// # Errors
/// [`Error::SourceInvalid`] naming the file and line of the first structural problem.
pub fn build_catalog(set: &SourceSet, version: Option<&str>) -> Result<Catalog> {
    let mut b = Builder::new();
    b.add_sources(set)?;
    b.finish(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(path: &str, text: &str) -> Option<SourceText> {
        Some(SourceText {
            path: path.into(),
            text: text.into(),
        })
    }

    #[test]
    fn families_should_follow_each_clouds_naming() {
        assert_eq!(family_of(Cloud::Aws, "m7g.large"), "m7g");
        assert_eq!(family_of(Cloud::Gcp, "n2-standard-2"), "n2");
        assert_eq!(family_of(Cloud::Azure, "Standard_D2s_v5"), "Dsv5");
        assert_eq!(family_of(Cloud::Azure, "Standard_E4-2s_v5"), "Esv5");
        assert_eq!(azure_arch("Standard_D2ps_v5"), Arch::Arm64);
        assert_eq!(azure_arch("Standard_NP10s"), Arch::X86_64);
        assert!(is_burstable(Cloud::Aws, "t3.micro"));
        assert!(is_burstable(Cloud::Azure, "Standard_A0"));
        assert!(is_promo_or_retired(Cloud::Azure, "Standard_A7"));
        assert!(!is_promo_or_retired(Cloud::Azure, "Standard_A2m_v2"));
        assert!(is_promo_or_retired(Cloud::Azure, "Standard_D2_v2_Promo"));
        assert!(!is_burstable(Cloud::Aws, "trn1.2xlarge"));
    }

    #[test]
    fn catalog_should_list_only_priced_types() {
        // Seeded with every embedded type (as `catalog update --from-api` does), priced for two.
        let mut b = Builder::new();
        b.add_catalog_types(Catalog::embedded());
        let src = b.begin_source("api", "2026-11-26", "test");
        for (t, r, usd) in [
            ("m5.large", "us-east-1", 0.096),
            ("m5.xlarge", "us-east-1", 0.192),
            ("m5.xlarge", "eu-west-1", 0.214),
            ("no-such.type", "us-east-1", 1.0),
        ] {
            b.add_price(
                src,
                PriceRow {
                    cloud: Cloud::Aws,
                    instance_type: t.into(),
                    region: r.into(),
                    purchase: Purchase::OnDemand,
                    usd_per_hour: usd,
                },
            );
        }
        let (c, unpriced) = b.finish_counted(Some("test")).unwrap();
        let mut names: Vec<&str> = c.types().iter().map(|t| t.name.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["m5.large", "m5.xlarge"]);
        assert_eq!(unpriced, Catalog::embedded().types().len() - 2);
        assert_eq!(c.offers().len(), 3);
        for o in c.offers() {
            let t = &c.types()[o.type_index as usize];
            assert_eq!(
                o.on_demand,
                Some(if t.name == "m5.large" {
                    0.096
                } else if c.regions()[o.region_index as usize].name == "us-east-1" {
                    0.192
                } else {
                    0.214
                })
            );
        }
        // The row of a type without specs is rejected, and counted.
        let s = &c.sources()[0];
        assert_eq!((s.rows, s.accepted, s.rejected), (4, 3, 1), "{s:?}");
    }

    #[test]
    fn validation_should_count_and_apply_the_rules() {
        let azure = "InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,GpuInfo,Price,SpotPrice,Region,Generation\n\
            Standard_D2s_v5,,,2.0,8,,0.096,0.01,eastus,V2\n\
            Standard_D2s_v5,,,2.0,8,,0.096,0.5,westus,V2\n\
            Standard_D4s_v5,,,4.0,16,,,,eastus,V2\n\
            Standard_D8s_v5,,,8.0,32,,-1,0.1,eastus,V2\n\
            Standard_D2s_v5,,,2.0,8,,0.1,,eastus,V2\n";
        let aws = "InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,GpuInfo,Price,SpotPrice,Region,AvailabilityZone,Arch\n\
            m5.large,,,2.0,8.0,,0.096,0.03,us-east-1,use1-az1,x86_64\n\
            m5.large,,,2.0,8.0,,0.096,0.05,us-east-1,use1-az2,x86_64\n\
            m5.large,,,2.0,8.0,,0.096,0.04,us-east-1,use1-az3,x86_64\n\
            m5.large,,,2.0,8.0,,0.096,0.04,us-east-1,use1-az3,x86_64\n\
            mac1.metal,,,12.0,32.0,,,1.0,us-east-1,use1-az1,x86_64_mac\n\
            m5.large,,,2.0,8.0,,1.013,,cn-north-1,cnn1-az1,x86_64\n";
        let set = SourceSet {
            aws_skypilot: st("aws/vms.csv", aws),
            azure_skypilot: st("azure/vms.csv", azure),
            ..SourceSet::default()
        };
        let c = build_catalog(&set, Some("test")).unwrap();
        let a = c
            .sources()
            .iter()
            .find(|s| s.name == "aws_skypilot")
            .unwrap();
        assert_eq!(
            (a.rows, a.accepted, a.repaired, a.rejected),
            (6, 3, 0, 3),
            "{a:?}"
        );
        let z = c
            .sources()
            .iter()
            .find(|s| s.name == "azure_skypilot")
            .unwrap();
        // westus spot above on-demand and eastus D8s negative price are repaired; blank D4s and the
        // duplicate D2s/eastus are rejected.
        assert_eq!(
            (z.rows, z.accepted, z.repaired, z.rejected),
            (5, 1, 2, 2),
            "{z:?}"
        );
        let m5 = c
            .offers()
            .iter()
            .find(|o| c.types()[o.type_index as usize].name == "m5.large")
            .unwrap();
        assert_eq!(m5.spot, Some(0.04), "median of the three zones");
        let west = c
            .offers()
            .iter()
            .find(|o| c.regions()[o.region_index as usize].name == "westus")
            .unwrap();
        assert_eq!(west.spot, None);
        assert!(c.regions().iter().all(|r| !r.name.starts_with("cn-")));
    }

    #[test]
    fn missing_column_should_name_file_and_column() {
        let set = SourceSet {
            azure_skypilot: st("azure/vms.csv", "InstanceType,vCPUs\nx,1\n"),
            ..SourceSet::default()
        };
        let e = build_catalog(&set, None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid source file azure/vms.csv at line 1: missing column `AcceleratorName`"
        );
    }

    #[test]
    fn commit_should_be_found_among_backquoted_words() {
        let md = "- Commit (as reported by the index, `read_file`): `00148f2af3672e2229b4f7bf8157d5a3f36e3c35`";
        assert_eq!(commit_of(md).as_deref(), Some("commit 00148f2a"));
    }

    #[test]
    fn gcp_header_date_should_parse() {
        assert_eq!(
            gcp_generated("about:\n  generated: Thu Jul 30 06:13:17 2026\n").as_deref(),
            Some("2026-07-30")
        );
    }
}
