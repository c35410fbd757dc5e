//! The price catalog: instance types, regions and priced offers of AWS, Azure and GCP.
//!
//! The catalog is stored as a compact tab-separated text (`engine/data/catalog.tsv.txt`, format
//! [`FORMAT_VERSION`]) and embedded in every binary with `include_str!`. Parsing it is pure: no
//! file is read at run time. [`Catalog::embedded`] parses the embedded text once.
//!
//! # Text format (version 1)
//! One record per line, fields separated by tabs, `#` starts a comment line:
//! - `format\t1`
//! - `version\t<label>` the catalog version (by default the newest snapshot date)
//! - `source\t<name>\t<snapshot>\t<rows>\t<accepted>\t<repaired>\t<rejected>\t<note>`
//! - `region\t<cloud>\t<name>` regions, numbered in order of appearance from 0
//! - `type\t<cloud>\t<name>\t<family>\t<arch>\t<vcpu>\t<mem_gib>\t<gpu>\t<gpu_model>\t<gpu_mem_gib>\t<net_gbps>\t<flags>`
//!   instance types, numbered from 0; `flags` holds `b` (burstable or shared-core) and/or `p`
//!   (promotional or retired); empty fields mean unknown
//! - `o\t<type>\t<region>\t<on-demand>\t<spot>\t<1y>\t<3y>` hourly USD prices of one type in one
//!   region; an empty field means the purchase option is not offered there

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use super::{Error, Result};

/// The version of the catalog text format this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// Hours in a month, the conversion used for every monthly figure (8,760 h / 12).
pub const HOURS_PER_MONTH: f64 = 730.0;

/// The catalog text embedded in the binaries.
const EMBEDDED: &str = include_str!("../../data/catalog.tsv.txt");

/// A public cloud.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cloud {
    /// Amazon Web Services (EC2).
    Aws,
    /// Microsoft Azure (Virtual Machines).
    Azure,
    /// Google Cloud (Compute Engine).
    Gcp,
}

impl Cloud {
    /// All clouds, in display order.
    pub const ALL: [Cloud; 3] = [Cloud::Aws, Cloud::Azure, Cloud::Gcp];

    /// The lowercase name used in flags, JSON and the catalog (`aws`, `azure`, `gcp`).
    pub fn as_str(self) -> &'static str {
        match self {
            Cloud::Aws => "aws",
            Cloud::Azure => "azure",
            Cloud::Gcp => "gcp",
        }
    }
}

impl fmt::Display for Cloud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Cloud {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "aws" | "ec2" => Ok(Cloud::Aws),
            "azure" => Ok(Cloud::Azure),
            "gcp" | "google" => Ok(Cloud::Gcp),
            other => Err(Error::UnknownCloud {
                name: other.to_string(),
            }),
        }
    }
}

/// A CPU architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Arch {
    /// 64-bit x86 (Intel, AMD).
    #[serde(rename = "x86_64")]
    X86_64,
    /// 64-bit ARM (Graviton, Ampere, Axion, Cobalt).
    #[serde(rename = "arm64")]
    Arm64,
}

impl Arch {
    /// The name used in flags, JSON and the catalog (`x86_64`, `arm64`).
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Arm64 => "arm64",
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Arch {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "x86_64" | "x86-64" | "amd64" | "x86" => Ok(Arch::X86_64),
            "arm64" | "aarch64" | "arm" => Ok(Arch::Arm64),
            other => Err(Error::UnknownArch {
                name: other.to_string(),
            }),
        }
    }
}

/// How capacity is bought.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Purchase {
    /// Pay as you go, per hour.
    #[serde(rename = "on-demand")]
    OnDemand,
    /// Spare capacity at a discount that the cloud may reclaim (AWS Spot, Azure Spot, GCP Spot VMs).
    #[serde(rename = "spot")]
    Spot,
    /// A one-year commitment (reserved instance, savings plan or committed-use discount).
    #[serde(rename = "reserved-1y")]
    Reserved1y,
    /// A three-year commitment.
    #[serde(rename = "reserved-3y")]
    Reserved3y,
}

impl Purchase {
    /// All purchase options, in display order.
    pub const ALL: [Purchase; 4] = [
        Purchase::OnDemand,
        Purchase::Spot,
        Purchase::Reserved1y,
        Purchase::Reserved3y,
    ];

    /// The name used in flags and JSON (`on-demand`, `spot`, `reserved-1y`, `reserved-3y`).
    pub fn as_str(self) -> &'static str {
        match self {
            Purchase::OnDemand => "on-demand",
            Purchase::Spot => "spot",
            Purchase::Reserved1y => "reserved-1y",
            Purchase::Reserved3y => "reserved-3y",
        }
    }

    /// The commitment term in hours (0 for on-demand and spot).
    pub fn term_hours(self) -> f64 {
        match self {
            Purchase::OnDemand | Purchase::Spot => 0.0,
            Purchase::Reserved1y => 8_760.0,
            Purchase::Reserved3y => 3.0 * 8_760.0,
        }
    }

    /// Whether this is a committed term.
    pub fn is_committed(self) -> bool {
        matches!(self, Purchase::Reserved1y | Purchase::Reserved3y)
    }

    /// Parses a comma-separated list; `reserved` expands to both committed terms.
    ///
    /// # Errors
    /// [`Error::UnknownPurchase`] naming the first unknown entry.
    pub fn parse_list(s: &str) -> Result<Vec<Purchase>> {
        let mut out = Vec::new();
        for item in s.split(',').map(str::trim).filter(|x| !x.is_empty()) {
            let add: &[Purchase] = match item.to_ascii_lowercase().as_str() {
                "on-demand" | "ondemand" | "on_demand" => &[Purchase::OnDemand],
                "spot" | "preemptible" => &[Purchase::Spot],
                "reserved" | "committed" => &[Purchase::Reserved1y, Purchase::Reserved3y],
                "reserved-1y" | "reserved_1y" | "1y" => &[Purchase::Reserved1y],
                "reserved-3y" | "reserved_3y" | "3y" => &[Purchase::Reserved3y],
                _ => {
                    return Err(Error::UnknownPurchase {
                        name: item.to_string(),
                    })
                }
            };
            for p in add {
                if !out.contains(p) {
                    out.push(*p);
                }
            }
        }
        Ok(out)
    }
}

impl fmt::Display for Purchase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A region of one cloud.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Region {
    /// The cloud the region belongs to.
    pub cloud: Cloud,
    /// The region code (`us-east-1`, `eastus`, `us-central1`).
    pub name: String,
}

/// An instance (VM, machine) type of one cloud and its resources.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceType {
    /// The cloud that sells it.
    pub cloud: Cloud,
    /// The type name (`m5.large`, `Standard_D2s_v5`, `n2-standard-2`).
    pub name: String,
    /// The family (`m5`, `Standard_D` series name, `n2`), used by family allow/deny lists.
    pub family: String,
    /// The CPU architecture.
    pub arch: Arch,
    /// Virtual CPUs.
    pub vcpu: f64,
    /// Memory in GiB.
    pub mem_gib: f64,
    /// Number of GPUs (0 when none).
    pub gpu: f64,
    /// GPU model (`A100`, `T4`), when the type has GPUs.
    pub gpu_model: Option<String>,
    /// Total GPU memory in GiB (0 when unknown or none).
    pub gpu_mem_gib: f64,
    /// Network bandwidth in Gbit/s, where the source states it (AWS only).
    pub network_gbps: Option<f64>,
    /// Burstable or shared-core (AWS `t*`, Azure `Basic_*`/`Standard_B*`, GCP shared-core types).
    pub burstable: bool,
    /// Promotional or retired SKU (Azure `*_Promo`).
    pub promo: bool,
}

/// The hourly prices of one instance type in one region, per purchase option.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Offer {
    /// Index into [`Catalog::types`].
    pub type_index: u32,
    /// Index into [`Catalog::regions`].
    pub region_index: u32,
    /// On-demand USD per hour.
    pub on_demand: Option<f64>,
    /// Spot USD per hour.
    pub spot: Option<f64>,
    /// One-year committed USD per hour (paid for every hour of the term).
    pub reserved_1y: Option<f64>,
    /// Three-year committed USD per hour (paid for every hour of the term).
    pub reserved_3y: Option<f64>,
}

impl Offer {
    /// The hourly price for `purchase`, if offered.
    pub fn price(&self, purchase: Purchase) -> Option<f64> {
        match purchase {
            Purchase::OnDemand => self.on_demand,
            Purchase::Spot => self.spot,
            Purchase::Reserved1y => self.reserved_1y,
            Purchase::Reserved3y => self.reserved_3y,
        }
    }
}

/// Where one part of the catalog came from, with its snapshot date and validation counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceInfo {
    /// Source name (`aws_karpenter`, `aws_skypilot`, `azure_skypilot`, `gcp_cyclenerd`, `aws_pricing_api`...).
    pub name: String,
    /// Snapshot date (`YYYY-MM-DD`) or, where the source has none, the commit it was taken at.
    pub snapshot: String,
    /// Data rows read.
    pub rows: u64,
    /// Rows kept as they were.
    pub accepted: u64,
    /// Rows kept after a repair (see `docs/cost.md` for the rules).
    pub repaired: u64,
    /// Rows dropped.
    pub rejected: u64,
    /// Free text: notes on the source (no tabs).
    pub note: String,
}

/// Counts that describe a catalog.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogStats {
    /// Instance types per cloud.
    pub types: Vec<(Cloud, usize)>,
    /// Regions per cloud.
    pub regions: Vec<(Cloud, usize)>,
    /// Priced (type, region, purchase) combinations per cloud and purchase option.
    pub prices: Vec<(Cloud, Purchase, usize)>,
}

/// The price catalog: instance types, regions and hourly prices.
///
/// Build one with [`Catalog::embedded`] (the committed snapshot), [`Catalog::from_text`], or
/// [`super::build::build_catalog`] from source files.
#[derive(Debug, Clone, PartialEq)]
pub struct Catalog {
    pub(crate) version: String,
    pub(crate) sources: Vec<SourceInfo>,
    pub(crate) regions: Vec<Region>,
    pub(crate) types: Vec<InstanceType>,
    pub(crate) offers: Vec<Offer>,
}

impl Catalog {
    /// The catalog embedded in this build, parsed once.
    ///
    /// # Panics
    /// If the embedded text does not parse; a unit test guarantees it does.
    pub fn embedded() -> &'static Catalog {
        static CATALOG: OnceLock<Catalog> = OnceLock::new();
        CATALOG.get_or_init(|| {
            Catalog::from_text(EMBEDDED)
                .expect("the embedded catalog parses (checked by a unit test)")
        })
    }

    /// Assembles a catalog from its parts, checking that every index is in range and every price
    /// is finite and positive.
    ///
    /// # Errors
    /// [`Error::CatalogInvalid`] naming the first bad offer.
    pub fn new(
        version: impl Into<String>,
        sources: Vec<SourceInfo>,
        regions: Vec<Region>,
        types: Vec<InstanceType>,
        offers: Vec<Offer>,
    ) -> Result<Catalog> {
        for (i, o) in offers.iter().enumerate() {
            let bad = |what: &str| Error::CatalogInvalid {
                line: i + 1,
                reason: format!("offer {i}: {what}"),
            };
            let t = types
                .get(o.type_index as usize)
                .ok_or_else(|| bad("type index out of range"))?;
            let r = regions
                .get(o.region_index as usize)
                .ok_or_else(|| bad("region index out of range"))?;
            if t.cloud != r.cloud {
                return Err(bad("type and region belong to different clouds"));
            }
            for p in Purchase::ALL {
                if let Some(v) = o.price(p) {
                    if !(v.is_finite() && v > 0.0) {
                        return Err(bad("price is not a positive number"));
                    }
                }
            }
        }
        Ok(Catalog {
            version: version.into(),
            sources,
            regions,
            types,
            offers,
        })
    }

    /// The catalog version label (by default the newest snapshot date of its sources).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The sources with their snapshot dates and validation counts.
    pub fn sources(&self) -> &[SourceInfo] {
        &self.sources
    }

    /// All regions; [`Offer::region_index`] points here.
    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    /// All instance types; [`Offer::type_index`] points here.
    pub fn types(&self) -> &[InstanceType] {
        &self.types
    }

    /// All offers (one per type and region).
    pub fn offers(&self) -> &[Offer] {
        &self.offers
    }

    /// Looks an instance type up by cloud and name.
    pub fn find_type(&self, cloud: Cloud, name: &str) -> Option<&InstanceType> {
        self.types
            .iter()
            .find(|t| t.cloud == cloud && t.name == name)
    }

    /// The offer of an instance type (by cloud and name) in a region, if the catalog has one.
    pub fn find_offer(&self, cloud: Cloud, name: &str, region: &str) -> Option<&Offer> {
        let ti = self
            .types
            .iter()
            .position(|t| t.cloud == cloud && t.name == name)?;
        self.offers.iter().find(|o| {
            o.type_index as usize == ti
                && self
                    .regions
                    .get(o.region_index as usize)
                    .is_some_and(|r| r.cloud == cloud && r.name == region)
        })
    }

    /// Counts of types, regions and prices per cloud.
    pub fn stats(&self) -> CatalogStats {
        let mut s = CatalogStats::default();
        for c in Cloud::ALL {
            s.types
                .push((c, self.types.iter().filter(|t| t.cloud == c).count()));
            s.regions
                .push((c, self.regions.iter().filter(|r| r.cloud == c).count()));
            for p in Purchase::ALL {
                let n = self
                    .offers
                    .iter()
                    .filter(|o| {
                        self.regions[o.region_index as usize].cloud == c && o.price(p).is_some()
                    })
                    .count();
                s.prices.push((c, p, n));
            }
        }
        s
    }

    /// Parses the catalog text format (see the module docs).
    ///
    /// # Errors
    /// [`Error::CatalogInvalid`] with the 1-based line number and what is wrong there.
    pub fn from_text(text: &str) -> Result<Catalog> {
        let mut version = String::new();
        let mut format = None;
        let mut sources = Vec::new();
        let mut regions = Vec::new();
        let mut types = Vec::new();
        let mut offers = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let lineno = i + 1;
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |reason: String| Error::CatalogInvalid {
                line: lineno,
                reason,
            };
            let f: Vec<&str> = line.split('\t').collect();
            let num = |k: usize| -> Result<f64> {
                let s = f.get(k).copied().unwrap_or("");
                s.parse::<f64>()
                    .map_err(|_| bad(format!("field {} is not a number: {s:?}", k + 1)))
            };
            let opt = |k: usize| -> Result<Option<f64>> {
                match f.get(k).copied().unwrap_or("") {
                    "" => Ok(None),
                    s => s
                        .parse::<f64>()
                        .map(Some)
                        .map_err(|_| bad(format!("field {} is not a number: {s:?}", k + 1))),
                }
            };
            let need = |n: usize| -> Result<()> {
                if f.len() < n {
                    Err(bad(format!(
                        "expected {n} tab-separated fields, found {}",
                        f.len()
                    )))
                } else {
                    Ok(())
                }
            };
            match f[0] {
                "format" => {
                    need(2)?;
                    let v: u32 = f[1]
                        .parse()
                        .map_err(|_| bad(format!("bad format version {:?}", f[1])))?;
                    if v != FORMAT_VERSION {
                        return Err(bad(format!(
                            "catalog format {v} is not supported (this build reads {FORMAT_VERSION})"
                        )));
                    }
                    format = Some(v);
                }
                "version" => {
                    need(2)?;
                    version = f[1].to_string();
                }
                "source" => {
                    need(8)?;
                    let int = |k: usize| -> Result<u64> {
                        f[k].parse()
                            .map_err(|_| bad(format!("field {} is not a count: {:?}", k + 1, f[k])))
                    };
                    sources.push(SourceInfo {
                        name: f[1].to_string(),
                        snapshot: f[2].to_string(),
                        rows: int(3)?,
                        accepted: int(4)?,
                        repaired: int(5)?,
                        rejected: int(6)?,
                        note: f[7].to_string(),
                    });
                }
                "region" => {
                    need(3)?;
                    regions.push(Region {
                        cloud: f[1]
                            .parse()
                            .map_err(|_| bad(format!("unknown cloud {:?}", f[1])))?,
                        name: f[2].to_string(),
                    });
                }
                "type" => {
                    need(13)?;
                    types.push(InstanceType {
                        cloud: f[1]
                            .parse()
                            .map_err(|_| bad(format!("unknown cloud {:?}", f[1])))?,
                        name: f[2].to_string(),
                        family: f[3].to_string(),
                        arch: f[4]
                            .parse()
                            .map_err(|_| bad(format!("unknown architecture {:?}", f[4])))?,
                        vcpu: num(5)?,
                        mem_gib: num(6)?,
                        gpu: num(7)?,
                        gpu_model: (!f[8].is_empty()).then(|| f[8].to_string()),
                        gpu_mem_gib: num(9)?,
                        network_gbps: opt(10)?,
                        burstable: f[11].contains('b'),
                        promo: f[11].contains('p'),
                    });
                    let _ = f[12];
                }
                "o" => {
                    need(7)?;
                    let idx = |k: usize| -> Result<u32> {
                        f[k].parse().map_err(|_| {
                            bad(format!("field {} is not an index: {:?}", k + 1, f[k]))
                        })
                    };
                    offers.push(Offer {
                        type_index: idx(1)?,
                        region_index: idx(2)?,
                        on_demand: opt(3)?,
                        spot: opt(4)?,
                        reserved_1y: opt(5)?,
                        reserved_3y: opt(6)?,
                    });
                }
                other => return Err(bad(format!("unknown record kind {other:?}"))),
            }
        }
        if format.is_none() {
            return Err(Error::CatalogInvalid {
                line: 1,
                reason: "missing `format` record".into(),
            });
        }
        Catalog::new(version, sources, regions, types, offers)
    }

    /// Writes the catalog text format (see the module docs); [`Catalog::from_text`] reads it back
    /// to an equal catalog.
    pub fn to_text(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::with_capacity(64 * self.offers.len() + 1024);
        let clean = |x: &str| x.replace(['\t', '\n', '\r'], " ");
        let _ = writeln!(s, "# predictive price catalog: instance types and hourly USD prices of AWS, Azure and GCP");
        let _ = writeln!(s, "format\t{FORMAT_VERSION}");
        let _ = writeln!(s, "version\t{}", clean(&self.version));
        for src in &self.sources {
            let _ = writeln!(
                s,
                "source\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                clean(&src.name),
                clean(&src.snapshot),
                src.rows,
                src.accepted,
                src.repaired,
                src.rejected,
                clean(&src.note)
            );
        }
        for r in &self.regions {
            let _ = writeln!(s, "region\t{}\t{}", r.cloud, clean(&r.name));
        }
        let o = |v: Option<f64>| v.map(|x| format!("{x}")).unwrap_or_default();
        for t in &self.types {
            let mut flags = String::new();
            if t.burstable {
                flags.push('b');
            }
            if t.promo {
                flags.push('p');
            }
            let _ = writeln!(
                s,
                "type\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t",
                t.cloud,
                clean(&t.name),
                clean(&t.family),
                t.arch,
                t.vcpu,
                t.mem_gib,
                t.gpu,
                clean(t.gpu_model.as_deref().unwrap_or("")),
                t.gpu_mem_gib,
                o(t.network_gbps),
                flags
            );
        }
        for f in &self.offers {
            let _ = writeln!(
                s,
                "o\t{}\t{}\t{}\t{}\t{}\t{}",
                f.type_index,
                f.region_index,
                o(f.on_demand),
                o(f.spot),
                o(f.reserved_1y),
                o(f.reserved_3y)
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_catalog_should_parse_and_cover_three_clouds() {
        let c = Catalog::embedded();
        assert!(!c.version().is_empty());
        let stats = c.stats();
        for (cloud, n) in &stats.types {
            assert!(*n > 0, "{cloud} has instance types");
        }
        assert!(c.offers().len() > 1000);
    }

    #[test]
    fn text_format_should_round_trip() {
        let c = Catalog::embedded();
        let again = Catalog::from_text(&c.to_text()).expect("round trip parses");
        assert_eq!(&again, c);
    }

    #[test]
    fn bad_text_should_name_the_line() {
        let err = Catalog::from_text("format\t1\nregion\tmars\tx\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid catalog at line 2: unknown cloud \"mars\""
        );
        let err = Catalog::from_text("format\t1\nregion\taws\tus-east-1\no\t0\t0\t1\t\t\t\n")
            .unwrap_err();
        assert!(err.to_string().contains("type index out of range"), "{err}");
    }

    #[test]
    fn purchase_list_should_expand_reserved() {
        assert_eq!(
            Purchase::parse_list("on-demand, reserved").unwrap(),
            vec![
                Purchase::OnDemand,
                Purchase::Reserved1y,
                Purchase::Reserved3y
            ]
        );
        assert_eq!(Purchase::parse_list("sport").unwrap_err().to_string(), "unknown purchase option `sport` (expected on-demand, spot, reserved, reserved-1y or reserved-3y)");
    }
}
