//! RFC 3339 timestamps for `timestamp("...")`, without a date crate (the filter
//! crate stays dependency-free so every service can afford it).

const DAY: i64 = 86_400;
/// The largest UTC offset RFC 3339 can express, in seconds (23:59).
const MAX_OFFSET: i64 = 23 * 3600 + 59 * 60;

/// Days since 1970-01-01 in the proleptic Gregorian calendar (Howard Hinnant's
/// algorithm, exact for every year a four-digit timestamp can name).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`]; `z` may be any `i64` divided by a day, so the
/// arithmetic cannot overflow.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

fn digits(s: &str, from: usize, n: usize) -> Option<i64> {
    let part = s.get(from..from + n)?;
    if part.bytes().all(|b| b.is_ascii_digit()) {
        part.parse().ok()
    } else {
        None
    }
}

fn byte_is(s: &str, at: usize, allowed: &[u8]) -> bool {
    s.as_bytes().get(at).is_some_and(|b| allowed.contains(b))
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` to unix seconds and nanos. The error
/// says what is wrong, because "invalid timestamp" alone sends users guessing.
pub(crate) fn parse_rfc3339(s: &str) -> Result<(i64, u32), String> {
    const SHAPE: &str = "expected the form YYYY-MM-DDTHH:MM:SSZ, optionally with \
                         .fraction and a ±HH:MM offset instead of Z";
    let (Some(y), true, Some(mo), true, Some(d), true, Some(h), true, Some(mi), true, Some(sec)) = (
        digits(s, 0, 4),
        byte_is(s, 4, b"-"),
        digits(s, 5, 2),
        byte_is(s, 7, b"-"),
        digits(s, 8, 2),
        byte_is(s, 10, b"Tt"),
        digits(s, 11, 2),
        byte_is(s, 13, b":"),
        digits(s, 14, 2),
        byte_is(s, 16, b":"),
        digits(s, 17, 2),
    ) else {
        return Err(SHAPE.into());
    };
    if !(1..=12).contains(&mo) {
        return Err(format!("month {mo:02} does not exist"));
    }
    if d < 1 || d > days_in_month(y, mo) {
        return Err(format!("day {d:02} does not exist in {y:04}-{mo:02}"));
    }
    if h > 23 || mi > 59 || sec > 59 {
        return Err(format!("time {h:02}:{mi:02}:{sec:02} does not exist"));
    }
    // Every byte up to here was ASCII, so slicing at 19 is on a char boundary.
    let mut rest = &s[19..];
    let mut nanos = 0u32;
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return Err("expected digits after the '.' in the seconds".into());
        }
        if n > 9 {
            return Err("fractional seconds finer than nanoseconds are not supported".into());
        }
        let value: u32 = frac[..n].parse().map_err(|_| SHAPE.to_string())?;
        nanos = value * 10u32.pow(9 - n as u32);
        rest = &frac[n..];
    }
    let offset = match rest.as_bytes() {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (Some(oh), Some(om)) = (digits(rest, 1, 2), digits(rest, 4, 2)) else {
                return Err(SHAPE.into());
            };
            if oh > 23 || om > 59 {
                return Err(format!("offset {oh:02}:{om:02} does not exist"));
            }
            let o = oh * 3600 + om * 60;
            if *sign == b'-' { -o } else { o }
        }
        [] => return Err("missing the time zone: end with Z or an offset like +02:00".into()),
        _ => return Err(SHAPE.into()),
    };
    let secs = days_from_civil(y, mo, d) * DAY + h * 3600 + mi * 60 + sec - offset;
    Ok((secs, nanos))
}

fn format_local(local: i64, nanos: u32, zone: &str) -> String {
    let (y, m, d) = civil_from_days(local.div_euclid(DAY));
    let rem = local.rem_euclid(DAY);
    let (h, mi, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    let frac = if nanos == 0 {
        String::new()
    } else {
        format!(".{nanos:09}")
    };
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}{frac}{zone}")
}

fn year_of(local: i64) -> i64 {
    civil_from_days(local.div_euclid(DAY)).0
}

/// Formats in UTC. Instants whose UTC year falls just outside 0000..=9999 (which
/// `0000-01-01T00:00:00+01:00` parses to) are written with an offset that keeps the
/// local year printable, so every parsed timestamp prints back to a parsable one.
pub(crate) fn format_rfc3339(seconds: i64, nanos: u32) -> String {
    let year = year_of(seconds);
    if year < 0 {
        let local = seconds.saturating_add(MAX_OFFSET);
        if year_of(local) >= 0 {
            return format_local(local, nanos, "+23:59");
        }
    } else if year > 9999 {
        let local = seconds.saturating_sub(MAX_OFFSET);
        if year_of(local) <= 9999 {
            return format_local(local, nanos, "-23:59");
        }
    }
    format_local(seconds, nanos, "Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Ok((0, 0)));
        assert_eq!(
            parse_rfc3339("2024-01-01T00:00:00Z"),
            Ok((1_704_067_200, 0))
        );
        assert_eq!(
            parse_rfc3339("2024-01-01T08:00:00+08:00"),
            Ok((1_704_067_200, 0))
        );
        assert_eq!(
            parse_rfc3339("2023-12-31T19:30:00-04:30"),
            Ok((1_704_067_200, 0))
        );
        assert_eq!(
            parse_rfc3339("2024-02-29t00:00:00.5z"),
            Ok((1_709_164_800, 500_000_000))
        );
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59.000000001Z"), Ok((-1, 1)));
    }

    #[test]
    fn invalid_dates_are_explained() {
        for (bad, why) in [
            ("2023-02-29T00:00:00Z", "day 29 does not exist in 2023-02"),
            ("1900-02-29T00:00:00Z", "day 29 does not exist"),
            ("2024-04-31T00:00:00Z", "day 31 does not exist"),
            ("2024-13-01T00:00:00Z", "month 13"),
            ("2024-00-01T00:00:00Z", "month 00"),
            ("2024-01-01T24:00:00Z", "time 24:00:00"),
            ("2024-01-01T23:59:60Z", "time 23:59:60"),
            ("2024-01-01T00:00:00+24:00", "offset 24:00"),
            ("2024-01-01T00:00:00", "missing the time zone"),
            ("2024-01-01T00:00:00.Z", "digits after the '.'"),
            ("2024-01-01T00:00:00.1234567891Z", "finer than nanoseconds"),
            ("2024-01-01 00:00:00Z", "expected the form"),
            ("2024-1-01T00:00:00Z", "expected the form"),
            ("+024-01-01T00:00:00Z", "expected the form"),
            ("2024-01-01T00:00:00+0100", "expected the form"),
            ("2024-01-01T00:00:00Zjunk", "expected the form"),
            ("2024-01-01T00:00:0é", "expected the form"),
            ("x", "expected the form"),
            ("", "expected the form"),
        ] {
            let err = parse_rfc3339(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn formats_back_to_the_same_instant() {
        assert_eq!(format_rfc3339(1_704_067_200, 0), "2024-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(-1, 1), "1969-12-31T23:59:59.000000001Z");
        for (s, n) in [(-86_401, 7), (0, 999_999_999), (253_402_300_799, 0)] {
            assert_eq!(parse_rfc3339(&format_rfc3339(s, n)), Ok((s, n)));
        }
        // Parsable inputs whose UTC instant lies outside years 0000..=9999.
        for src in ["0000-01-01T00:00:00+23:59", "9999-12-31T23:59:59-23:59"] {
            let (s, n) = parse_rfc3339(src).unwrap();
            let text = format_rfc3339(s, n);
            assert_eq!(parse_rfc3339(&text), Ok((s, n)), "{src} -> {text}");
        }
        // Unprintable instants still format (without panicking).
        assert!(!format_rfc3339(i64::MAX, u32::MAX).is_empty());
        assert!(!format_rfc3339(i64::MIN, 0).is_empty());
    }
}
