//! Civil (proleptic Gregorian, UTC) dates and unix seconds, both ways.
//!
//! Trace files, price APIs and request signatures write time as calendar dates; the engine counts
//! unix seconds. These two conversions are the only place where one becomes the other. They use
//! the closed-form day counts of the proleptic Gregorian calendar (eras of 400 years, 146 097
//! days each, with March as the first month so that leap days fall at the end of a year).

/// A UTC calendar date and time of day, to the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct CivilTime {
    /// Year (astronomical numbering: year 0 exists).
    pub year: i64,
    /// Month, 1 to 12.
    pub month: u8,
    /// Day of the month, 1 to 31.
    pub day: u8,
    /// Hour, 0 to 23.
    pub hour: u8,
    /// Minute, 0 to 59.
    pub minute: u8,
    /// Second, 0 to 59.
    pub second: u8,
}

/// Days from 1970-01-01 to the date `year-month-day` (negative before it). `month` is 1 to 12;
/// days outside a month's length roll over (day 0 is the last day of the month before).
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date `(year, month, day)` that is `days` days after 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // month is in 1..=12 and day in 1..=31 by construction.
    (year, month as u8, day as u8)
}

impl CivilTime {
    /// The UTC date and time of `unix` seconds since 1970-01-01T00:00:00Z.
    pub fn from_unix(unix: i64) -> Self {
        let (days, secs) = (unix.div_euclid(86_400), unix.rem_euclid(86_400));
        let (year, month, day) = civil_from_days(days);
        // secs is in 0..86 400, so every part fits a u8.
        CivilTime {
            year,
            month,
            day,
            hour: (secs / 3600) as u8,
            minute: (secs / 60 % 60) as u8,
            second: (secs % 60) as u8,
        }
    }

    /// Unix seconds of this date and time.
    pub fn to_unix(self) -> i64 {
        days_from_civil(self.year, i64::from(self.month), i64::from(self.day)) * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
    }

    /// `YYYY-MM-DD HH:MM:SS`, as trace files write timestamps.
    pub fn to_sql(self) -> String {
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }

    /// `YYYYMMDDTHHMMSSZ`, the ISO 8601 basic format that request signatures use.
    pub fn to_basic(self) -> String {
        format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_dates_should_convert_both_ways() {
        let cases = [
            (0, "1970-01-01 00:00:00"),
            (951_782_400, "2000-02-29 00:00:00"),
            (951_868_800, "2000-03-01 00:00:00"),
            (1_392_388_200, "2014-02-14 14:30:00"),
            (-1, "1969-12-31 23:59:59"),
            (4_107_542_399, "2100-02-28 23:59:59"),
        ];
        for (unix, text) in cases {
            let t = CivilTime::from_unix(unix);
            assert_eq!(t.to_sql(), text, "{unix}");
            assert_eq!(t.to_unix(), unix, "{text}");
        }
        assert_eq!(
            CivilTime::from_unix(1_440_938_160).to_basic(),
            "20150830T123600Z"
        );
    }

    #[test]
    fn day_counts_should_follow_leap_rules() {
        // 1900 is not a leap year, 2000 is.
        assert_eq!(
            days_from_civil(1900, 3, 1) - days_from_civil(1900, 2, 28),
            1
        );
        assert_eq!(
            days_from_civil(2000, 3, 1) - days_from_civil(2000, 2, 28),
            2
        );
        assert_eq!(
            days_from_civil(2001, 1, 1) - days_from_civil(2000, 1, 1),
            366
        );
    }

    proptest! {
        #[test]
        fn unix_seconds_should_round_trip(unix in -100_000_000_000i64..100_000_000_000) {
            let t = CivilTime::from_unix(unix);
            prop_assert!((1..=12).contains(&t.month));
            prop_assert!((1..=31).contains(&t.day));
            prop_assert_eq!(t.to_unix(), unix);
        }

        #[test]
        fn consecutive_days_should_be_consecutive_dates(days in -1_000_000i64..1_000_000) {
            let (y, m, d) = civil_from_days(days);
            prop_assert_eq!(days_from_civil(y, i64::from(m), i64::from(d)), days);
            let (y2, m2, d2) = civil_from_days(days + 1);
            prop_assert!((y2, m2, d2) > (y, m, d));
        }
    }
}
