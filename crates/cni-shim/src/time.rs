//! UTC timestamps without a calendar dependency: RFC 3339 for records, a compact sortable form for file names,
//! and the `--since` argument.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Nanoseconds since the Unix epoch (0 for a clock before it).
pub fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// (year, month, day) of a day count since 1970-01-01 (the proleptic Gregorian calendar).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Days since 1970-01-01 of a date.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

struct Parts {
    year: i64,
    month: u32,
    day: u32,
    hour: u64,
    minute: u64,
    second: u64,
    nanos: u64,
}

fn parts(nanos: u64) -> Parts {
    let secs = nanos / 1_000_000_000;
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    Parts {
        year,
        month,
        day,
        hour: rem / 3600,
        minute: rem % 3600 / 60,
        second: rem % 60,
        nanos: nanos % 1_000_000_000,
    }
}

/// `2024-05-01T12:34:56.123456789Z`.
pub fn rfc3339(nanos: u64) -> String {
    let p = parts(nanos);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
        p.year, p.month, p.day, p.hour, p.minute, p.second, p.nanos
    )
}

/// `20240501T123456.123456789Z`: sorts as time does, for record file names.
pub fn stamp(nanos: u64) -> String {
    let p = parts(nanos);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}.{:09}Z",
        p.year, p.month, p.day, p.hour, p.minute, p.second, p.nanos
    )
}

/// `12:34:56.123`: the short form `logs` prints.
pub fn clock(nanos: u64) -> String {
    let p = parts(nanos);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:03}",
        p.year,
        p.month,
        p.day,
        p.hour,
        p.minute,
        p.second,
        p.nanos / 1_000_000
    )
}

/// Reads `--since`: a duration before `now` (`90s`, `15m`, `2h`, `3d`) or an RFC 3339 UTC time
/// (`2024-05-01T12:00:00Z`, fractional seconds allowed). Returns nanoseconds since the epoch.
pub fn parse_since(text: &str, now: SystemTime) -> Option<u64> {
    let text = text.trim();
    if let Some(unit) = text.chars().last().filter(|c| "smhd".contains(*c)) {
        if let Ok(n) = text[..text.len() - 1].parse::<u64>() {
            let secs = n.checked_mul(match unit {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                _ => 86_400,
            })?;
            let then = now.checked_sub(Duration::from_secs(secs))?;
            return Some(unix_nanos(then));
        }
    }
    parse_rfc3339(text)
}

/// Reads `YYYY-MM-DDTHH:MM:SS[.fraction]Z`.
pub fn parse_rfc3339(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' || !matches!(b[b.len() - 1], b'Z' | b'z') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u64> {
        let s = text.get(r)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
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
    let frac = &text[19..text.len() - 1];
    let nanos = match frac.strip_prefix('.') {
        None if frac.is_empty() => 0,
        Some(digits)
            if !digits.is_empty()
                && digits.len() <= 9
                && digits.bytes().all(|c| c.is_ascii_digit()) =>
        {
            digits.parse::<u64>().ok()? * 10u64.pow(9 - digits.len() as u32)
        }
        _ => return None,
    };
    let days = days_from_civil(year as i64, month as u32, day as u32);
    let secs = u64::try_from(days).ok()? * 86_400 + hour * 3600 + minute * 60 + second;
    // Past 2554 nanoseconds overflow u64: such a time is simply later than any record.
    Some(secs.saturating_mul(1_000_000_000).saturating_add(nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        // 2000-02-29 (a leap day in a century leap year) 12:34:56.5
        let t = 951_827_696_500_000_000;
        assert_eq!(rfc3339(t), "2000-02-29T12:34:56.500000000Z");
        assert_eq!(stamp(t), "20000229T123456.500000000Z");
        assert_eq!(clock(t), "2000-02-29 12:34:56.500");
    }

    #[test]
    fn parse_inverts_format() {
        for t in [
            0,
            951_827_696_500_000_000,
            1_700_000_000_123_456_789,
            4_102_444_800_000_000_000,
        ] {
            assert_eq!(parse_rfc3339(&rfc3339(t)), Some(t));
        }
        assert_eq!(
            parse_rfc3339("2000-02-29T12:34:56Z"),
            Some(951_827_696_000_000_000)
        );
        assert_eq!(
            parse_rfc3339("2000-02-29T12:34:56.5Z"),
            Some(951_827_696_500_000_000)
        );
        assert_eq!(parse_rfc3339("2999-01-01T00:00:00Z"), Some(u64::MAX));
        for bad in [
            "",
            "2000-02-29",
            "2000-13-01T00:00:00Z",
            "2000-02-29T12:34:56",
            "2000-02-29T12:34:56.Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn since_takes_durations_and_times() {
        let now = UNIX_EPOCH + Duration::from_secs(100_000);
        assert_eq!(parse_since("90s", now), Some(99_910 * 1_000_000_000));
        assert_eq!(parse_since("2h", now), Some(92_800 * 1_000_000_000));
        assert_eq!(parse_since("1d", now), Some(13_600 * 1_000_000_000));
        assert_eq!(
            parse_since("1970-01-01T00:00:01Z", now),
            Some(1_000_000_000)
        );
        assert_eq!(parse_since("soon", now), None);
        assert_eq!(
            parse_since("99999999d", now),
            Some(0),
            "before the epoch is everything"
        );
        assert_eq!(parse_since("99999999999999999999d", now), None);
    }
}
