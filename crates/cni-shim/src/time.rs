//! UTC timestamps: RFC 3339 for records, a compact sortable form for file names, and the `--since` argument. The
//! calendar is humantime's; this module only picks the shapes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Nanoseconds since the Unix epoch (0 for a clock before it; u64::MAX past 2554).
pub(crate) fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// `2024-05-01T12:34:56.123456789Z`.
pub(crate) fn rfc3339(nanos: u64) -> String {
    humantime::format_rfc3339_nanos(UNIX_EPOCH + Duration::from_nanos(nanos)).to_string()
}

/// `20240501T123456.123456789Z`: sorts as time does, for record file names.
pub(crate) fn stamp(nanos: u64) -> String {
    rfc3339(nanos).replace(['-', ':'], "")
}

/// `2024-05-01 12:34:56.123`: the short form `logs` and `tree` print.
pub(crate) fn clock(nanos: u64) -> String {
    let full = rfc3339(nanos);
    format!("{} {}", &full[..10], &full[11..23])
}

/// Reads `--since`: a duration before `now` (`90s`, `15m`, `2h`, `3d`, or humantime's longer forms such as
/// `1h 30m`) or an RFC 3339 UTC time (`2024-05-01T12:00:00Z`, fractional seconds allowed). Returns nanoseconds
/// since the epoch.
pub(crate) fn parse_since(text: &str, now: SystemTime) -> Option<u64> {
    let text = text.trim();
    if let Ok(ago) = humantime::parse_duration(text) {
        return now.checked_sub(ago).map(unix_nanos);
    }
    parse_rfc3339(text)
}

/// Reads `YYYY-MM-DDTHH:MM:SS[.fraction]Z`.
pub(crate) fn parse_rfc3339(text: &str) -> Option<u64> {
    humantime::parse_rfc3339(text).ok().map(unix_nanos)
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
            "2000-02-30T00:00:00Z",
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
