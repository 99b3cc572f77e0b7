//! RFC 3339 date-times to and from unix seconds.
//!
//! Written here rather than taken from `time` or `chrono` (both already in the
//! dependency tree): their RFC 3339 parsers refuse a date-time without an
//! offset, which this one reads as UTC and which a webhook or `/events` sender
//! may well write (ISO 8601 local time: a naive Python `isoformat()`,
//! ClickHouse's `2024-01-15 10:30:00`); `time`'s also refuses a space between
//! date and time and `±hhmm` or `±hh` offsets. A timestamp refused would order
//! its event by arrival instead and lose its `timestamp_start`: a behaviour
//! change to save two short, well-known civil-date algorithms (Hinnant's). The
//! tests pin each form.

/// RFC 3339 / ISO-8601 date-time to unix seconds (`2024-01-15T10:30:00.000Z`,
/// with `Z`, a `±hh:mm`, `±hhmm` or `±hh` offset, or none for UTC; `T`, `t` or
/// a space between date and time). `None` for anything else.
pub fn parse_rfc3339(s: &str) -> Option<f64> {
    let s = s.trim();
    let b = s.as_bytes();
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &s[19..];
    let mut fraction = 0.0;
    if let Some(after_dot) = rest.strip_prefix('.') {
        let digits = after_dot.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        fraction = format!("0.{}", &after_dot[..digits]).parse().ok()?;
        rest = &after_dot[digits..];
    }
    let offset = match rest {
        "" | "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let hm = &rest[1..];
            let (h, m) = match hm.len() {
                5 if hm.as_bytes()[2] == b':' => {
                    (hm[..2].parse::<i64>().ok()?, hm[3..].parse::<i64>().ok()?)
                }
                4 => (hm[..2].parse::<i64>().ok()?, hm[2..].parse::<i64>().ok()?),
                2 => (hm.parse::<i64>().ok()?, 0),
                _ => return None,
            };
            sign * (h * 3600 + m * 60)
        }
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset;
    Some(secs as f64 + fraction)
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

/// Unix seconds as RFC 3339 UTC with milliseconds (`2024-01-15T10:30:00.000Z`).
pub fn format_rfc3339(unix: f64) -> String {
    let millis_total = (unix * 1000.0).round() as i64;
    let secs = millis_total.div_euclid(1000);
    let millis = millis_total.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(
            parse_rfc3339("2024-01-15T10:30:00.000Z"),
            Some(1_705_314_600.0)
        );
        assert_eq!(
            parse_rfc3339("2024-01-15T11:30:00+01:00"),
            Some(1_705_314_600.0)
        );
        assert_eq!(
            parse_rfc3339("2024-01-15T10:30:00.250Z"),
            Some(1_705_314_600.25)
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(format_rfc3339(1_705_314_600.25), "2024-01-15T10:30:00.250Z");
    }

    /// The ISO 8601 forms RFC 3339 parsers refuse (see the module docs).
    #[test]
    fn lenient_forms() {
        let at = Some(1_705_314_600.0);
        for s in [
            "2024-01-15T10:30:00",
            "2024-01-15 10:30:00",
            "2024-01-15t10:30:00z",
            "2024-01-15 11:30:00+01:00",
            "2024-01-15T11:30:00+0100",
            "2024-01-15T11:30:00+01",
            "2024-01-15T08:00:00-02:30",
            " 2024-01-15T10:30:00.000000Z ",
        ] {
            assert_eq!(parse_rfc3339(s), at, "{s}");
        }
        assert_eq!(
            parse_rfc3339("2024-01-15 10:30:00.123456"),
            Some(1_705_314_600.123_456)
        );
        for bad in [
            "2024-01-15T10:30",
            "2024-01-15T10:30:00.",
            "2024-13-15T10:30:00Z",
            "2024-01-15T24:00:00Z",
            "2024-01-15T10:30:00+1",
            "2024-01-15T10:30:00 UTC",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn formats_round_to_the_millisecond() {
        assert_eq!(format_rfc3339(0.0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_rfc3339(1_705_314_600.999_6),
            "2024-01-15T10:30:01.000Z"
        );
        assert_eq!(format_rfc3339(951_782_400.0), "2000-02-29T00:00:00.000Z");
        assert_eq!(format_rfc3339(-0.5), "1969-12-31T23:59:59.500Z");
        for unix in [0.0, 951_782_400.0, 1_705_314_600.25, 4_102_444_799.999] {
            assert_eq!(parse_rfc3339(&format_rfc3339(unix)), Some(unix));
        }
    }
}
