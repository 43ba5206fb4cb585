//! The `Date` header's format, from a time the caller passes in.

/// Formats `unix_secs` (seconds since 1970-01-01 00:00:00 UTC) as an
/// IMF-fixdate, the form RFC 9110 (5.6.7) requires of a `Date` header:
/// `Sun, 06 Nov 1994 08:49:37 GMT`.
///
/// The crate has no clock, so the caller says what time it is; a server
/// usually formats once per second and reuses the string.
///
/// ```
/// assert_eq!(tether_proto::http::http_date(784111777), "Sun, 06 Nov 1994 08:49:37 GMT");
/// ```
pub fn http_date(unix_secs: u64) -> String {
    const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix_secs / 86_400;
    let secs = unix_secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    // 1970-01-01 was a Thursday.
    let weekday = WEEKDAYS[((days + 4) % 7) as usize];
    format!(
        "{weekday}, {day:02} {} {year:04} {:02}:{:02}:{:02} GMT",
        MONTHS[(month - 1) as usize],
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Year, month (1..=12) and day (1..=31) of the day `days` after 1970-01-01,
/// in the proleptic Gregorian calendar.
///
/// Howard Hinnant's `civil_from_days`: count from 0000-03-01 so that the leap
/// day is the last day of a year, then split into 400-year eras (146097 days),
/// years of the era and days of the year, and read the month off a year that
/// starts in March. Only whole-number arithmetic, no tables, no loops.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468; // days since 0000-03-01
    let era = z / 146_097;
    let doe = z % 146_097; // day of era, 0..=146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // 0..=365, from March 1
    let mp = (5 * doy + 2) / 153; // month from March, 0..=11
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}
