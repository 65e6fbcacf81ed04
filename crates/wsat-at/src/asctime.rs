//! Calendar arithmetic without a clock: Unix seconds → `asctime()` text, the `__DATE__ __TIME__`
//! style stamp AT+GMR prints, and ESP-AT's timezone parameter.
//!
//! Shared with `build.rs` (included by path), so it depends on nothing but `core`/`alloc`.

/// Month abbreviations as C's `asctime()` prints them.
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
/// Weekday abbreviations, index 0 = Sunday.
const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

/// Broken-down UTC time (proleptic Gregorian), the fields both formats need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    /// Full year, e.g. 2024.
    pub year: i64,
    /// Month 1..=12.
    pub month: u32,
    /// Day of month 1..=31.
    pub day: u32,
    /// Hour 0..=23.
    pub hour: u32,
    /// Minute 0..=59.
    pub minute: u32,
    /// Second 0..=59.
    pub second: u32,
    /// Day of week, 0 = Sunday.
    pub weekday: u32,
}

/// Splits Unix seconds into a civil date/time (H. Hinnant's `civil_from_days`), so the engine can
/// format times handed in by the glue without any time crate.
pub fn civil(unix_seconds: i64) -> Civil {
    let days = unix_seconds.div_euclid(86_400);
    let secs = unix_seconds.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    Civil {
        year,
        month: month as u32,
        day: day as u32,
        hour: (secs / 3600) as u32,
        minute: ((secs % 3600) / 60) as u32,
        second: (secs % 60) as u32,
        // 1970-01-01 was a Thursday (4).
        weekday: (days + 4).rem_euclid(7) as u32,
    }
}

/// `asctime()` without the trailing newline: `Thu Jan  1 00:00:05 1970` (day padded with a
/// space), exactly what AT+CIPSNTPTIME? prints.
pub fn asctime(unix_seconds: i64) -> String {
    let c = civil(unix_seconds);
    format!(
        "{} {} {:2} {:02}:{:02}:{:02} {}",
        WEEKDAYS[c.weekday as usize % 7],
        MONTHS[(c.month as usize + 11) % 12],
        c.day,
        c.hour,
        c.minute,
        c.second,
        c.year
    )
}

/// C's `__DATE__ " " __TIME__` form (`Nov 17 2025 09:59:18`, day padded with a space), used for the
/// build stamp in AT+GMR (called from `build.rs`).
#[allow(dead_code)]
pub fn build_stamp(unix_seconds: i64) -> String {
    let c = civil(unix_seconds);
    format!(
        "{} {:2} {} {:02}:{:02}:{:02}",
        MONTHS[(c.month as usize + 11) % 12],
        c.day,
        c.year,
        c.hour,
        c.minute,
        c.second
    )
}

/// Converts ESP-AT's `<timezone>` parameter to minutes east of UTC, or `None` if invalid.
///
/// Two forms exist: whole hours −12..=14, or `±HHMM` in −1200..=1400 with minutes < 60
/// (e.g. `545` = UTC+05:45, `-330` = UTC−03:30).
pub fn timezone_minutes(tz: i32) -> Option<i32> {
    if (-12..=14).contains(&tz) {
        return Some(tz * 60);
    }
    if !(-1200..=1400).contains(&tz) {
        return None;
    }
    let abs = tz.abs();
    let (hours, minutes) = (abs / 100, abs % 100);
    if minutes >= 60 {
        return None;
    }
    Some(tz.signum() * (hours * 60 + minutes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_is_thursday_with_space_padded_day() {
        assert_eq!(asctime(5), "Thu Jan  1 00:00:05 1970");
    }

    #[test]
    fn seed_example_time() {
        // 2024-11-13 17:00:15 (the seed shows it in UTC+8; here we format the shifted value).
        assert_eq!(asctime(1_731_517_215), "Wed Nov 13 17:00:15 2024");
    }

    #[test]
    fn leap_day_and_negative_times() {
        assert_eq!(asctime(951_782_400), "Tue Feb 29 00:00:00 2000");
        assert_eq!(asctime(-1), "Wed Dec 31 23:59:59 1969");
    }

    #[test]
    fn build_stamp_format() {
        assert_eq!(build_stamp(1_763_373_558), "Nov 17 2025 09:59:18");
        assert_eq!(build_stamp(1_762_509_558), "Nov  7 2025 09:59:18");
    }

    #[test]
    fn timezones() {
        assert_eq!(timezone_minutes(8), Some(480));
        assert_eq!(timezone_minutes(-12), Some(-720));
        assert_eq!(timezone_minutes(14), Some(840));
        assert_eq!(timezone_minutes(545), Some(345));
        assert_eq!(timezone_minutes(-330), Some(-210));
        assert_eq!(timezone_minutes(800), Some(480));
        assert_eq!(timezone_minutes(1400), Some(840));
        assert_eq!(timezone_minutes(1401), None);
        assert_eq!(timezone_minutes(-1201), None);
        assert_eq!(timezone_minutes(160), None);
    }
}
