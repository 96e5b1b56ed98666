//! Objective schedules: standard 5-field cron (`minute hour day-of-month
//! month day-of-week`, day-of-week 0–7 with 0 and 7 = Sunday, names
//! allowed), the descriptors `@hourly @daily @midnight @weekly @monthly
//! @yearly @annually`, and `@every <duration>` (`90s`, `15m`, `1h30m`, at
//! least one minute), evaluated in an IANA time zone.
//!
//! The `cron` crate wants a seconds field, numbers Sunday as 1, requires
//! day-of-month *and* day-of-week to match, and skips or doubles local times
//! around daylight-saving changes. The translation to it lives here and is
//! tested against the standard (Vixie cron) meaning:
//! - when both day fields are restricted (neither starts with `*`), a day
//!   matches if *either* does (`0 9 1 * 1`: the 1st of the month and every
//!   Monday);
//! - times are matched on the wall clock of the zone. A schedule with a
//!   fixed hour fires once per matching wall-clock time: a time that does
//!   not exist (spring forward) fires at the first instant after the gap, a
//!   time that happens twice (fall back) fires at its first occurrence. A
//!   schedule whose hour field is `*` runs by the real clock: it fires at
//!   every instant whose wall time matches (both passes of a repeated hour;
//!   none in a skipped hour).

use crate::clock::UnixMillis;
use chrono::offset::LocalResult;
use chrono::{NaiveDateTime, TimeZone, Utc};
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
    /// One schedule, or two (day-of-month | day-of-week) whose times are merged;
    /// `hourly`: the hour field is `*` (real-clock semantics around DST).
    Cron {
        parts: Vec<cron::Schedule>,
        hour_wild: bool,
    },
    Every(Duration),
}

const DOW_NAMES: [&str; 8] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"];

/// The five fields, their names and what they accept (for error messages).
const FIELDS: [(&str, &str); 5] = [
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day-of-month", "1-31"),
    ("month", "1-12 or JAN-DEC"),
    ("day-of-week", "0-7 (0 and 7 are Sunday) or SUN-SAT"),
];

/// Longest a daylight-saving change moves the wall clock (historically at most 2 h; 3 h of margin).
const MAX_SHIFT_MS: i64 = 3 * 3_600_000;

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

/// Whether a day field restricts days (standard cron: it does not start with `*`).
fn restricts(field: &str) -> bool {
    !(field.starts_with('*') || field == "?")
}

/// The crate's schedule for the user's five fields (day-of-week already rewritten).
fn crate_schedule(f: [&str; 5], dow: &str) -> Result<cron::Schedule, cron::error::Error> {
    cron::Schedule::from_str(&format!("0 {} {} {} {} {dow}", f[0], f[1], f[2], f[3]))
}

/// Finds which of the user's fields the crate refused, and says so in the user's terms.
fn field_error(expr: &str, f: [&str; 5]) -> String {
    for (i, (name, range)) in FIELDS.iter().enumerate() {
        let mut probe = ["*"; 5];
        probe[i] = f[i];
        let dow = if i == 4 { day_of_week_names(f[4]) } else { Ok("*".to_string()) };
        let bad = match dow {
            Err(e) => return format!("cron_expr {expr:?}: {e}"),
            Ok(dow) => crate_schedule(probe, &dow).is_err(),
        };
        if bad {
            return format!("cron_expr {expr:?}: the {name} field {:?} is not valid ({name} takes {range}, lists, ranges and steps)", f[i]);
        }
    }
    format!("cron_expr {expr:?} is not a valid schedule")
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
        let five = match expr.to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => "0 0 1 1 *".to_string(),
            "@monthly" => "0 0 1 * *".to_string(),
            "@weekly" => "0 0 * * 0".to_string(),
            "@daily" | "@midnight" => "0 0 * * *".to_string(),
            "@hourly" => "0 * * * *".to_string(),
            s if s.starts_with('@') => return Err(format!("unknown schedule descriptor {expr:?}")),
            _ => expr.clone(),
        };
        let f: Vec<&str> = five.split(' ').collect();
        let Ok(f) = <[&str; 5]>::try_from(f) else {
            return Err(format!(
                "cron_expr {expr:?} must have 5 fields (minute hour day-of-month month day-of-week), or be @hourly, @daily, @weekly, @monthly, @yearly or @every <duration>"
            ));
        };
        let dow = day_of_week_names(f[4]).map_err(|e| format!("cron_expr {expr:?}: {e}"))?;
        let parts = if restricts(f[2]) && restricts(f[4]) {
            // Either day field matching is enough: two schedules, their times merged.
            vec![crate_schedule(f, "*"), crate_schedule([f[0], f[1], "*", f[3], f[4]], &dow)]
        } else {
            vec![crate_schedule(f, &dow)]
        };
        let parts = parts.into_iter().collect::<Result<Vec<_>, _>>().map_err(|_| field_error(&expr, f))?;
        Ok(Schedule { kind: Kind::Cron { parts, hour_wild: f[1].starts_with('*') }, tz })
    }

    /// The first fire time strictly after `after`.
    pub fn next_after(&self, after: UnixMillis) -> Option<UnixMillis> {
        match &self.kind {
            Kind::Every(d) => after.checked_add(d.as_millis() as i64),
            Kind::Cron { parts, hour_wild } => self.next_cron(parts, *hour_wild, after),
        }
    }

    /// The next `n` fire times strictly after `after`.
    pub fn upcoming(&self, after: UnixMillis, n: usize) -> Vec<UnixMillis> {
        let mut out = Vec::with_capacity(n);
        let mut at = after;
        while out.len() < n {
            match self.next_after(at) {
                Some(next) => {
                    out.push(next);
                    at = next;
                }
                None => break,
            }
        }
        out
    }

    /// The zone's wall clock at `ms`, as a naive time.
    fn wall(&self, ms: UnixMillis) -> Option<NaiveDateTime> {
        Some(Utc.timestamp_millis_opt(ms).single()?.with_timezone(&self.tz).naive_local())
    }

    /// The UTC offset in effect at `ms`, in seconds.
    fn offset(&self, ms: UnixMillis) -> i64 {
        self.wall(ms).map_or(0, |w| w.and_utc().timestamp() - ms.div_euclid(1000))
    }

    /// The instants a matching wall-clock time stands for (see the module docs).
    fn instants(&self, wall: NaiveDateTime, hour_wild: bool) -> Vec<UnixMillis> {
        match self.tz.from_local_datetime(&wall) {
            LocalResult::Single(t) => vec![t.timestamp_millis()],
            LocalResult::Ambiguous(a, b) if hour_wild => vec![a.timestamp_millis(), b.timestamp_millis()],
            LocalResult::Ambiguous(a, _) => vec![a.timestamp_millis()],
            LocalResult::None if hour_wild => Vec::new(),
            LocalResult::None => {
                // The first wall-clock minute after the gap that exists.
                let mut w = wall;
                for _ in 0..(48 * 60) {
                    w += chrono::Duration::minutes(1);
                    if let Some(t) = self.tz.from_local_datetime(&w).earliest() {
                        return vec![t.timestamp_millis()];
                    }
                }
                Vec::new()
            }
        }
    }

    /// The next cron time after `after`: candidates are enumerated on the
    /// wall clock (the crate runs in UTC, which has no daylight saving), then
    /// mapped to instants. Where the wall clock went back (within a few hours
    /// of a fall-back change) the mapping is not monotonic, so the scan
    /// starts earlier and keeps the smallest instant.
    fn next_cron(&self, parts: &[cron::Schedule], hour_wild: bool, after: UnixMillis) -> Option<UnixMillis> {
        // No offset change within a few hours of `x`: the wall clock runs straight there.
        let steady = |x: UnixMillis| self.offset(x - MAX_SHIFT_MS) == self.offset(x) && self.offset(x) == self.offset(x + MAX_SHIFT_MS);
        let from = if steady(after) { after } else { after - MAX_SHIFT_MS };
        let mut cursor = Utc.from_utc_datetime(&self.wall(from)?);
        let mut best: Option<UnixMillis> = None;
        let mut stop_wall: Option<NaiveDateTime> = None;
        for _ in 0..100_000 {
            let cand = parts.iter().filter_map(|s| s.after(&cursor).next()).min()?;
            let wall = cand.naive_utc();
            if stop_wall.is_some_and(|s| wall > s) {
                break;
            }
            if let Some(t) = self.instants(wall, hour_wild).into_iter().find(|t| *t > after) {
                best = Some(best.map_or(t, |b| b.min(t)));
                if stop_wall.is_none() {
                    // With one instant per wall time the mapping never goes back, so the
                    // first is the smallest; by the real clock it can, near a fall-back.
                    if !hour_wild || steady(t) {
                        return best;
                    }
                    stop_wall = Some(wall + chrono::Duration::milliseconds(2 * MAX_SHIFT_MS));
                }
            }
            cursor = cand;
        }
        best
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
            ("61 * * * *", "UTC", "the minute field \"61\" is not valid (minute takes 0-59"),
            ("0 24 * * *", "UTC", "the hour field \"24\""),
            ("0 0 32 * *", "UTC", "the day-of-month field \"32\""),
            ("0 0 * 13 *", "UTC", "the month field \"13\""),
            ("0 0 * * funday", "UTC", "the day-of-week field \"funday\""),
            ("0 8 * * 9", "UTC", "out of range"),
            ("@sometimes", "UTC", "unknown schedule descriptor"),
            ("@every 30s", "UTC", "at least one minute"),
            ("@every soon", "UTC", "not a duration"),
            ("0 * * * *", "Mars/Olympus", "IANA time zone"),
        ] {
            let e = Schedule::parse(expr, tz).expect_err(expr);
            assert!(e.contains(needle), "{expr}: {e}");
            assert!(!e.contains("0 61") && !e.contains("less than"), "no six-field internals: {e}");
        }
    }

    fn fires(expr: &str, tz: &str, from: &str, to: &str) -> Vec<String> {
        let s = Schedule::parse(expr, tz).expect(expr);
        let (mut at, end) = (at(from), at(to));
        let mut out = Vec::new();
        while let Some(next) = s.next_after(at).filter(|n| *n <= end) {
            out.push(crate::clock::rfc3339(next));
            at = next;
        }
        out
    }

    #[test]
    fn either_day_field_matching_is_enough_when_both_are_restricted() {
        // December 2026: the 1st is a Tuesday; Mondays are the 7th, 14th, 21st, 28th.
        let got = fires("0 9 1 * 1", "UTC", "2026-11-30T10:00:00Z", "2026-12-31T23:59:00Z");
        assert_eq!(
            got,
            ["2026-12-01T09:00:00Z", "2026-12-07T09:00:00Z", "2026-12-14T09:00:00Z", "2026-12-21T09:00:00Z", "2026-12-28T09:00:00Z"]
        );
        // A `*`-prefixed day field (`*/10`) makes both required, as in Vixie cron: Monday the 21st only.
        assert_eq!(fires("0 9 */10 * 1", "UTC", "2026-12-01T10:00:00Z", "2026-12-31T23:59:00Z"), ["2026-12-21T09:00:00Z"]);
        assert_eq!(fires("0 9 1 * *", "UTC", "2026-11-30T10:00:00Z", "2026-12-31T23:59:00Z"), ["2026-12-01T09:00:00Z"]);
    }

    #[test]
    fn daylight_saving_gaps_and_repeats_fire_once() {
        // Berlin 2026: 29 March 02:00 CET -> 03:00 CEST (01:00Z); 25 October 03:00 CEST -> 02:00 CET (01:00Z).
        let spring = fires("30 2 * * *", "Europe/Berlin", "2026-03-28T00:00:00Z", "2026-03-30T23:00:00Z");
        assert_eq!(
            spring,
            ["2026-03-28T01:30:00Z", "2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"],
            "the skipped 02:30 fires at 03:00 CEST"
        );
        let autumn = fires("30 2 * * *", "Europe/Berlin", "2026-10-24T00:00:00Z", "2026-10-26T23:00:00Z");
        assert_eq!(autumn, ["2026-10-24T00:30:00Z", "2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"], "the repeated 02:30 fires once");
        // Hour `*`: by the real clock — both passes of the repeated hour, nothing in the skipped one.
        let hourly = fires("30 * * * *", "Europe/Berlin", "2026-10-24T23:00:00Z", "2026-10-25T03:00:00Z");
        assert_eq!(hourly, ["2026-10-24T23:30:00Z", "2026-10-25T00:30:00Z", "2026-10-25T01:30:00Z", "2026-10-25T02:30:00Z"]);
        let hourly = fires("30 * * * *", "Europe/Berlin", "2026-03-28T23:00:00Z", "2026-03-29T03:00:00Z");
        assert_eq!(hourly, ["2026-03-28T23:30:00Z", "2026-03-29T00:30:00Z", "2026-03-29T01:30:00Z", "2026-03-29T02:30:00Z"]);
        // Every ten minutes through the repeated hour: every real ten minutes, none twice.
        let tens = fires("*/10 * * * *", "Europe/Berlin", "2026-10-24T23:55:00Z", "2026-10-25T02:05:00Z");
        assert_eq!(tens.len(), 13, "{tens:?}");
        assert!(tens.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn every_counts_from_the_time_given() {
        let s = Schedule::parse("@every 15m", "UTC").expect("every");
        let start = at("2026-12-02T10:00:00Z");
        assert_eq!(s.upcoming(start, 3), [start + 900_000, start + 1_800_000, start + 2_700_000]);
    }
}
