//! Objective schedules: standard 5-field cron (`minute hour day-of-month
//! month day-of-week`, day-of-week 0–7 with 0 and 7 = Sunday, names
//! allowed), the descriptors `@hourly @daily @midnight @weekly @monthly
//! @yearly @annually`, and `@every <duration>` (`90s`, `15m`, `1h30m`, at
//! least one minute), evaluated in an IANA time zone.
//!
//! The `cron` crate wants a seconds field and numbers Sunday as 1; the
//! translation to it lives here and is tested against the standard meaning.

use crate::clock::UnixMillis;
use chrono::{TimeZone, Utc};
use chrono_tz::Tz;
use std::str::FromStr;
use std::time::Duration;

/// A parsed schedule in its time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    kind: Kind,
    tz: Tz,
}

#[derive(Debug, Clone)]
enum Kind {
    Cron(Box<cron::Schedule>),
    Every(Duration),
}

const DOW_NAMES: [&str; 8] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"];

/// Rewrites a standard day-of-week field with names (the `cron` crate
/// counts from Sunday = 1).
fn day_of_week_names(field: &str) -> Result<String, String> {
    let name = |n: &str| -> Result<String, String> {
        match n.parse::<usize>() {
            Ok(i) if i < DOW_NAMES.len() => Ok(DOW_NAMES[i].to_string()),
            Ok(_) => Err(format!("day-of-week {n} is out of range (0-7, 0 and 7 are Sunday)")),
            Err(_) => Ok(n.to_string()),
        }
    };
    field
        .split(',')
        .map(|part| {
            let (base, step) = match part.split_once('/') {
                Some((b, s)) => (b, Some(s)),
                None => (part, None),
            };
            let base = match base.split_once('-') {
                // `5-7` in standard cron is FRI-SUN, which the crate cannot express as a range.
                Some((a, b)) if b == "7" || b == "0" => {
                    if step.is_some() {
                        return Err(format!("day-of-week range {base} ending on Sunday cannot take a step"));
                    }
                    let start = a.parse::<usize>().ok().filter(|v| *v <= 6).ok_or_else(|| format!("bad day-of-week range {base}"))?;
                    let mut days: Vec<&str> = (start..=6).map(|d| DOW_NAMES[d]).collect();
                    days.push("SUN");
                    return Ok(days.join(","));
                }
                Some((a, b)) => format!("{}-{}", name(a)?, name(b)?),
                None if base == "*" || base == "?" => base.to_string(),
                None => name(base)?,
            };
            Ok(match step {
                Some(s) => format!("{base}/{s}"),
                None => base,
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(|parts| parts.join(","))
}

/// Parses `90s`, `15m`, `2h`, `1h30m`, `1d`.
fn parse_duration(raw: &str) -> Result<Duration, String> {
    let bad = || format!("{raw:?} is not a duration like 90s, 15m, 1h30m or 1d");
    let mut total = 0u64;
    let mut num = String::new();
    for ch in raw.chars() {
        if ch.is_ascii_digit() {
            num.push(ch);
            continue;
        }
        let unit = match ch {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = num.parse().map_err(|_| bad())?;
        total = total.checked_add(n.checked_mul(unit).ok_or_else(bad)?).ok_or_else(bad)?;
        num.clear();
    }
    if !num.is_empty() || total == 0 {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

/// Parses an IANA time zone name.
fn timezone(tz: &str) -> Result<Tz, String> {
    Tz::from_str(tz.trim()).map_err(|_| format!("timezone {tz:?} is not an IANA time zone name (e.g. UTC, Europe/Berlin)"))
}

/// Checks an IANA time zone name (for triggers without a schedule).
pub fn check_timezone(tz: &str) -> Result<(), String> {
    timezone(tz).map(|_| ())
}

impl Schedule {
    /// Parses `expr` in time zone `tz` (IANA name, e.g. `Europe/Berlin`).
    pub fn parse(expr: &str, tz: &str) -> Result<Schedule, String> {
        let tz = timezone(tz)?;
        let expr = expr.split_whitespace().collect::<Vec<_>>().join(" ");
        if let Some(rest) = expr.strip_prefix("@every ") {
            let d = parse_duration(rest.trim())?;
            if d < Duration::from_secs(60) {
                return Err("@every must be at least one minute".into());
            }
            return Ok(Schedule { kind: Kind::Every(d), tz });
        }
        let six = match expr.to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => "0 0 0 1 1 *".to_string(),
            "@monthly" => "0 0 0 1 * *".to_string(),
            "@weekly" => "0 0 0 * * SUN".to_string(),
            "@daily" | "@midnight" => "0 0 0 * * *".to_string(),
            "@hourly" => "0 0 * * * *".to_string(),
            s if s.starts_with('@') => return Err(format!("unknown schedule descriptor {expr:?}")),
            _ => {
                let fields: Vec<&str> = expr.split(' ').collect();
                if fields.len() != 5 {
                    return Err(format!(
                        "cron_expr {expr:?} must have 5 fields (minute hour day-of-month month day-of-week), or be @hourly, @daily, @weekly, @monthly, @yearly or @every <duration>"
                    ));
                }
                format!("0 {} {} {} {} {}", fields[0], fields[1], fields[2], fields[3], day_of_week_names(fields[4])?)
            }
        };
        let cron = cron::Schedule::from_str(&six).map_err(|e| format!("cron_expr {expr:?} is not valid: {e}"))?;
        Ok(Schedule { kind: Kind::Cron(Box::new(cron)), tz })
    }

    /// The first fire time strictly after `after`.
    pub fn next_after(&self, after: UnixMillis) -> Option<UnixMillis> {
        self.upcoming(after, 1).into_iter().next()
    }

    /// The next `n` fire times strictly after `after`.
    pub fn upcoming(&self, after: UnixMillis, n: usize) -> Vec<UnixMillis> {
        match &self.kind {
            Kind::Every(d) => (1..=n as i64).map(|i| after + i * d.as_millis() as i64).collect(),
            Kind::Cron(c) => {
                let Some(start) = Utc.timestamp_millis_opt(after).single() else { return Vec::new() };
                c.after(&start.with_timezone(&self.tz)).take(n).map(|t| t.timestamp_millis()).collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> UnixMillis {
        chrono::DateTime::parse_from_rfc3339(s).expect("time").timestamp_millis()
    }

    #[test]
    fn standard_cron_means_what_it_says() {
        // 2026-12-02 is a Wednesday.
        let now = at("2026-12-02T10:17:00Z");
        let next = |e: &str, tz: &str| crate::clock::rfc3339(Schedule::parse(e, tz).expect(e).next_after(now).expect("next"));
        assert_eq!(next("0 */6 * * *", "UTC"), "2026-12-02T12:00:00Z");
        assert_eq!(next("30 9 * * 1-5", "UTC"), "2026-12-03T09:30:00Z", "weekdays: Thursday next");
        assert_eq!(next("0 8 * * 0", "UTC"), "2026-12-06T08:00:00Z", "0 is Sunday");
        assert_eq!(next("0 8 * * 7", "UTC"), "2026-12-06T08:00:00Z", "7 is Sunday too");
        assert_eq!(next("0 8 * * 5-7", "UTC"), "2026-12-04T08:00:00Z", "Friday to Sunday");
        assert_eq!(next("0 8 * * sat", "UTC"), "2026-12-05T08:00:00Z");
        assert_eq!(next("0 9 * * *", "Europe/Berlin"), "2026-12-03T08:00:00Z", "09:00 in Berlin is 08:00 UTC in winter");
        assert_eq!(next("@daily", "UTC"), "2026-12-03T00:00:00Z");
        assert_eq!(next("@weekly", "UTC"), "2026-12-06T00:00:00Z");
        assert_eq!(next("@every 1h30m", "UTC"), "2026-12-02T11:47:00Z");
        let five = Schedule::parse("@hourly", "UTC").expect("hourly").upcoming(now, 5);
        assert_eq!(five.len(), 5);
        assert!(five.windows(2).all(|w| w[1] - w[0] == 3_600_000));
    }

    #[test]
    fn bad_schedules_say_what_is_wrong() {
        for (expr, tz, needle) in [
            ("* * * *", "UTC", "must have 5 fields"),
            ("61 * * * *", "UTC", "is not valid"),
            ("0 8 * * 9", "UTC", "out of range"),
            ("@sometimes", "UTC", "unknown schedule descriptor"),
            ("@every 30s", "UTC", "at least one minute"),
            ("@every soon", "UTC", "not a duration"),
            ("0 * * * *", "Mars/Olympus", "IANA time zone"),
        ] {
            let e = Schedule::parse(expr, tz).expect_err(expr);
            assert!(e.contains(needle), "{expr}: {e}");
        }
    }
}
