//! Calendar arithmetic on the proleptic Gregorian calendar (Howard Hinnant's algorithms), in
//! UTC: the one place that turns epoch seconds into dates and back, for every timestamp
//! format the services print or parse (ISO 8601, SigV4's compact form, object key dates).

/// Days since 1970-01-01 of a date (`month` 1–12, `day` 1–31).
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date (year, month 1–12, day 1–31) of a count of days since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// A UTC instant broken down: (year, month, day, hour, minute, second).
pub fn from_epoch_secs(secs: i64) -> (i64, i64, i64, i64, i64, i64) {
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    (y, m, d, rem / 3600, (rem % 3600) / 60, rem % 60)
}

/// Epoch seconds of a UTC date and time.
pub fn to_epoch_secs(year: i64, month: i64, day: i64, hour: i64, minute: i64, second: i64) -> i64 {
    days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
}

/// `YYYY-MM-DDThh:mm:ssZ` of epoch seconds.
pub fn format_iso8601(secs: i64) -> String {
    let (y, m, d, hh, mm, ss) = from_epoch_secs(secs);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
}

/// Epoch seconds of `YYYY-MM-DDThh:mm:ssZ` (fractions and other offsets are not accepted).
pub fn parse_iso8601(t: &str) -> Option<i64> {
    let b = t.as_bytes();
    if b.len() != 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' || b[19] != b'Z'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| {
        t.get(r)
            .filter(|x| x.bytes().all(|c| c.is_ascii_digit()))
            .and_then(|x| x.parse::<i64>().ok())
    };
    let (y, m, d, hh, mm, ss) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    Some(to_epoch_secs(y, m, d, hh, mm, ss))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        assert_eq!(format_iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_iso8601(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(format_iso8601(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(parse_iso8601("2015-04-09T15:03:43Z"), Some(1_428_591_823));
        assert_eq!(parse_iso8601("2015-13-09T15:03:43Z"), None);
        assert_eq!(parse_iso8601("nonsense"), None);
        for secs in [-86_401i64, 0, 1, 951_868_799, 4_102_444_800, 253_402_300_799] {
            assert_eq!(parse_iso8601(&format_iso8601(secs)), Some(secs));
        }
    }
}
