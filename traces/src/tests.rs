//! Reader tests on the real excerpts committed under `tests/data/traces` (see its SOURCE.md).

use super::*;
use std::io::Write;

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data/traces")
        .join(rel)
}

#[test]
fn canonical_csv_should_read_nab_timestamps_and_values() {
    let p = data("nab/realAWSCloudwatch/ec2_cpu_utilization_24ae8d.csv");
    let s = read_samples(&p, Metric::Cpu).unwrap();
    assert_eq!(s.len(), 400);
    // 2014-02-14 14:30:00 UTC (python: calendar.timegm).
    assert_eq!(
        s[0],
        Sample {
            timestamp: 1_392_388_200,
            value: 0.132,
            line: 2
        }
    );
    assert_eq!(s[399].line, 401);
    assert_eq!(s[399].value, 0.066);
    assert_eq!(s[1].timestamp - s[0].timestamp, 300);
}

#[test]
fn bitbrains_should_read_the_chosen_column_from_gzip() {
    let p = data("bitbrains_rnd/rnd/2013-7/1.csv.gz");
    let cpu = read_samples(&p, Metric::Cpu).unwrap();
    let mem = read_samples(&p, Metric::Mem).unwrap();
    let net = read_samples(&p, Metric::NetIn).unwrap();
    assert_eq!(cpu.len(), 300);
    assert_eq!(cpu[0].timestamp, 1_372_629_804);
    assert_eq!(cpu[0].value, 87.779_983_5);
    assert_eq!(mem[0].value, 1_034_592.8);
    assert_eq!(net[0].value, 0.266_666_666_666_666_66);
}

#[test]
fn discover_should_join_bitbrains_months_and_name_series_like_the_reference() {
    let e = discover(&[data("bitbrains_rnd")]).unwrap();
    let ids: Vec<&str> = e.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["bitbrains_rnd/1", "bitbrains_rnd/2"]);
    assert_eq!(e[0].files.len(), 2);
    let e = discover(&[data("nab/realAWSCloudwatch")]).unwrap();
    assert_eq!(e[0].id, "realAWSCloudwatch/ec2_cpu_utilization_24ae8d");
    let all = discover(&[data("")]).unwrap();
    assert_eq!(all.len(), 3);
}

#[test]
fn load_should_resample_a_joined_vm_onto_an_hourly_grid() {
    let e = discover(&[data("bitbrains_rnd")]).unwrap();
    let (s, r) = load(&e[0], Metric::Cpu, 3600, Aggregation::Mean).unwrap();
    assert_eq!(s.step(), 3600);
    assert_eq!(s.start() % 3600, 0);
    assert_eq!(r.samples, 600);
    // July's and August's first 300 five-minute rows leave a month between them: interpolated.
    assert!(r.gaps_filled > 600, "{r:?}");
    assert!(s.values().iter().all(|v| v.is_finite() && *v >= 0.0));
    let n = SeriesStream::new(e, Metric::Mem, 3600, Aggregation::Max).count();
    assert_eq!(n, 2);
}

fn temp_file(name: &str, body: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(name);
    std::fs::File::create(&p)
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    (dir, p)
}

#[test]
fn bad_files_should_name_file_and_line() {
    let cases = [
        (
            "value.csv",
            "timestamp,value\n2014-01-01 00:00:00,1\n2014-01-01 00:05:00,abc\n",
            "value.csv:3: cannot parse value `abc`",
        ),
        (
            "time.csv",
            "timestamp,value\n2014-13-01 00:00:00,1\n",
            "time.csv:2: cannot parse timestamp `2014-13-01 00:00:00`",
        ),
        (
            "short.csv",
            "timestamp,value\n1388534400\n",
            "short.csv:2: expected 2 fields, found 1",
        ),
        (
            "head.csv",
            "time;v\n1;2\n",
            "head.csv:1: unrecognised header",
        ),
        (
            "bb.csv",
            "Timestamp [ms];\tCPU cores\n1;2\n",
            "bb.csv:1: no column `CPU usage [MHZ]` in the header",
        ),
        (
            "nan.csv",
            "timestamp,value\n1388534400,NaN\n",
            "nan.csv: samples do not form a series",
        ),
        (
            "far.csv",
            "timestamp,value\n1388534400,1\n1388534700,2\n99999999999,3\n",
            "far.csv:4: samples do not form a series",
        ),
    ];
    for (name, body, want) in cases {
        let (_d, p) = temp_file(name, body);
        let err = read_samples(&p, Metric::Cpu)
            .and_then(|_| {
                load(
                    &Entry {
                        id: name.into(),
                        files: vec![p.clone()],
                    },
                    Metric::Cpu,
                    300,
                    Aggregation::Mean,
                )
            })
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(want), "{name}: {msg}");
        assert!(msg.contains(&p.display().to_string()), "{name}: {msg}");
    }
}

#[test]
fn unix_second_timestamps_and_blank_lines_should_be_accepted() {
    let (_d, p) = temp_file(
        "u.csv",
        "timestamp,value\n1388534400,1.5\n\n1388534700.9,2\n",
    );
    let s = read_samples(&p, Metric::Cpu).unwrap();
    assert_eq!(
        s.iter().map(|s| s.timestamp).collect::<Vec<_>>(),
        [1_388_534_400, 1_388_534_700]
    );
    assert_eq!(s[1].line, 4);
}

#[test]
fn empty_and_na_values_should_read_as_missing_samples() {
    let (_d, p) = temp_file(
        "m.csv",
        "timestamp,value\n1388534400,1.5\n1388534700,\n1388535000,\"\"\n1388535300,NA\n\
         1388535600,n/a\n1388535900,null\n1388536200,None\n1388536500,2\n",
    );
    let s = read_samples(&p, Metric::Cpu).unwrap();
    assert_eq!(s.len(), 8, "every row is kept");
    assert_eq!(s[0].value, 1.5);
    assert_eq!(s[7].value, 2.0);
    for (k, sample) in s[1..7].iter().enumerate() {
        assert!(sample.value.is_nan(), "row {}: {}", k + 3, sample.value);
    }
    // Anything else that is not a number is still an error naming the line.
    let (_d, p) = temp_file("x.csv", "timestamp,value\n1388534400,1\n1388534700,nil\n");
    let msg = read_samples(&p, Metric::Cpu).unwrap_err().to_string();
    assert!(msg.contains("x.csv:3: cannot parse value `nil`"), "{msg}");
}

#[test]
fn datetime_and_duration_parsing_should_match_known_values() {
    assert_eq!(parse_datetime("1970-01-01 00:00:00"), Some(0));
    assert_eq!(parse_datetime("2000-03-01T00:00:00Z"), Some(951_868_800));
    assert_eq!(
        parse_datetime("2014-02-14 14:30:00.000000"),
        Some(1_392_388_200)
    );
    assert_eq!(parse_datetime("2014-02-30x"), None);
    assert_eq!(parse_duration("1h"), Some(3600));
    assert_eq!(parse_duration("5min"), Some(300));
    assert_eq!(parse_duration("0h"), None);
    assert_eq!("mem".parse::<Metric>().unwrap(), Metric::Mem);
    assert!("gpu".parse::<Metric>().is_err());
}

#[test]
fn nab_windows_should_parse() {
    let (_d, p) = temp_file(
        "w.json",
        r#"{"realAWSCloudwatch/a.csv": [["2014-02-14 14:30:00.000000", "2014-02-15 00:00:00.000000"]], "b.csv": []}"#,
    );
    let w = read_windows(&p).unwrap();
    assert_eq!(
        w["realAWSCloudwatch/a.csv"],
        vec![(1_392_388_200, 1_392_422_400)]
    );
    let (_d, p) = temp_file("bad.json", r#"{"a": [["x", "y"]]}"#);
    assert!(read_windows(&p)
        .unwrap_err()
        .to_string()
        .contains("bad.json"));
}
