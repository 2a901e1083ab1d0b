//! Cron expressions as Anomstack writes them (5 fields, POSIX weekday numbers,
//! Dagster's reading of steps) turned into the `cron` crate's form (seconds
//! first, weekdays 1-7 from Sunday).
//!
//! Hand-written because the `cron` crate differs from Dagster (croniter) in
//! two ways a migrated batch would feel: it numbers weekdays Quartz-style (the
//! POSIX `1`, Monday, means Sunday there), and it refuses a step larger than
//! its field (`*/60`, `*/180` in the minute field), which croniter accepts as
//! "the first value only". So numeric fields are expanded here into explicit
//! values, croniter's way, and every error names the user's own field.

use std::str::FromStr;

/// A parsed schedule together with the text the user wrote.
#[derive(Debug, Clone)]
pub struct CronExpr {
    pub text: String,
    pub schedule: cron::Schedule,
}

/// A field's name and the values it may hold.
struct Field {
    name: &'static str,
    min: u32,
    max: u32,
}

impl Field {
    const fn new(name: &'static str, min: u32, max: u32) -> Field {
        Field { name, min, max }
    }
}

const SECOND: Field = Field::new("second", 0, 59);
const MINUTE: Field = Field::new("minute", 0, 59);
const HOUR: Field = Field::new("hour", 0, 23);
const DAY_OF_MONTH: Field = Field::new("day of month", 1, 31);
const MONTH: Field = Field::new("month", 1, 12);

impl CronExpr {
    /// Parse a 5-field (minute-first) or 6-field (seconds-first) expression.
    pub fn parse(text: &str) -> Result<Self, String> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        let (seconds, rest) = match fields.len() {
            5 => ("0".to_string(), &fields[..]),
            6 => (expand(fields[0], &SECOND)?, &fields[1..]),
            n => {
                return Err(format!(
                    "expected 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds first, found {n}"
                ))
            }
        };
        let six = format!(
            "{seconds} {} {} {} {} {}",
            expand(rest[0], &MINUTE)?,
            expand(rest[1], &HOUR)?,
            expand(rest[2], &DAY_OF_MONTH)?,
            expand(rest[3], &MONTH)?,
            posix_weekdays_to_cron(rest[4])?
        );
        // What is left for the crate to refuse (names, `L`, `?`) is reported
        // without the rewritten form, which the user never wrote.
        let schedule = cron::Schedule::from_str(&six).map_err(|_| {
            "not a cron expression sandstack can read: each field is `*`, a number, a range `a-b`, \
             a step (`*/n`, `a-b/n`) or a list of these; months and weekdays may be names (JAN, MON)"
                .to_string()
        })?;
        // From a leap year's first day: the crate looks no further than
        // 2100, so an expression that fires at all fires before then.
        let leap_year =
            chrono::DateTime::<chrono::Utc>::from_timestamp(1_704_067_200, 0).unwrap_or_default();
        if schedule.after(&leap_year).next().is_none() {
            return Err(
                "it never fires: the days and months it names never meet (like 30 February or 31 April)"
                    .into(),
            );
        }
        Ok(CronExpr {
            text: text.to_string(),
            schedule,
        })
    }
}

/// A numeric field with its steps expanded, croniter's way: `a-b/n` is every
/// n-th value from a to b, `*/n` from the field's first value, `a/n` from a
/// to the field's last; a step past the end leaves only the first value.
/// Items that are not numeric (month names, `?`) pass through unchanged.
fn expand(text: &str, field: &Field) -> Result<String, String> {
    let mut out = Vec::new();
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                    format!(
                        "{}: step `{s}` in `{item}` must be a whole number of 1 or more",
                        field.name
                    )
                })?;
                (r, Some(step))
            }
            None => (item, None),
        };
        let bounds = match range {
            "*" => Some((field.min, field.max)),
            _ => match range.split_once('-') {
                Some((a, b)) => match (a.parse::<u32>(), b.parse::<u32>()) {
                    (Ok(a), Ok(b)) => Some((a, b)),
                    _ => None,
                },
                None => range.parse::<u32>().ok().map(|a| {
                    // `a/n` runs to the end of the field; a lone `a` is itself.
                    (a, if step.is_some() { field.max } else { a })
                }),
            },
        };
        let Some((lo, hi)) = bounds else {
            out.push(item.to_string());
            continue;
        };
        for v in [lo, hi] {
            if v < field.min || v > field.max {
                return Err(format!(
                    "{} {v} in `{item}` is out of range {}-{}",
                    field.name, field.min, field.max
                ));
            }
        }
        if lo > hi {
            return Err(format!(
                "{}: range `{item}` runs backwards ({lo} is after {hi})",
                field.name
            ));
        }
        match step {
            None if range == "*" => out.push("*".to_string()),
            None if lo == hi => out.push(lo.to_string()),
            None => out.push(format!("{lo}-{hi}")),
            Some(step) => out.extend((lo..=hi).step_by(step as usize).map(|v| v.to_string())),
        }
    }
    Ok(out.join(","))
}

const DAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// Rewrite numeric POSIX weekdays (0-7, 0 and 7 both Sunday) as names, which
/// both conventions read the same way.
fn posix_weekdays_to_cron(field: &str) -> Result<String, String> {
    let mut parts = Vec::new();
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (item, None),
        };
        let translated = match range.split_once('-') {
            Some((a, b)) => {
                let a = day_name(a)?;
                let b_num = b.parse::<u32>().ok();
                if b_num == Some(7) && step.is_none() && a != "SUN" {
                    // `5-7` is Friday through Sunday: Sunday comes first in the
                    // cron crate's week, so the range is split in two.
                    format!("{a}-SAT,SUN")
                } else if b_num == Some(7) && a != "SUN" {
                    return Err(format!(
                        "day-of-week range `{item}` ending in 7 with a step is not supported; list the days instead"
                    ));
                } else {
                    format!("{a}-{}", day_name(b)?)
                }
            }
            None => day_name(range)?,
        };
        parts.push(match step {
            Some(s) => format!("{translated}/{s}"),
            None => translated,
        });
    }
    Ok(parts.join(","))
}

fn day_name(token: &str) -> Result<String, String> {
    if token == "*" || token == "?" {
        return Ok(token.to_string());
    }
    match token.parse::<usize>() {
        Ok(n) if n <= 7 => Ok(DAY_NAMES[n % 7].to_string()),
        Ok(n) => Err(format!("day of week {n} is out of range 0-7")),
        Err(_) => Ok(token.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_date_that_never_occurs_is_refused() {
        for never in ["0 0 30 2 *", "0 0 31 4,6,9,11 *", "0 0 0 30-31 2 *"] {
            let e = CronExpr::parse(never).expect_err(never);
            assert!(e.starts_with("it never fires"), "{never}: {e}");
        }
        assert!(CronExpr::parse("0 0 29 2 *").is_ok(), "leap days come");
        assert!(CronExpr::parse("0 0 31 * *").is_ok());
    }
    use chrono::{Datelike, TimeZone, Utc};

    fn next_weekday(expr: &str) -> chrono::Weekday {
        let start = Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .expect("valid date");
        let parsed = CronExpr::parse(expr).expect("parses");
        parsed
            .schedule
            .after(&start)
            .next()
            .expect("has a next time")
            .weekday()
    }

    #[test]
    fn five_fields_use_posix_weekdays() {
        assert_eq!(next_weekday("0 9 * * 1"), chrono::Weekday::Mon);
        assert_eq!(next_weekday("0 9 * * 0"), chrono::Weekday::Sun);
        assert_eq!(next_weekday("0 9 * * 7"), chrono::Weekday::Sun);
        assert_eq!(next_weekday("0 9 * * 6"), chrono::Weekday::Sat);
    }

    #[test]
    fn ranges_and_lists_translate() {
        assert!(CronExpr::parse("*/3 * * * 1-5").is_ok());
        assert!(CronExpr::parse("0 6 * * 5-7").is_ok());
        assert!(CronExpr::parse("0 6 * * MON,wed").is_ok());
        assert_eq!(next_weekday("0 6 * * 5-7"), chrono::Weekday::Fri);
    }

    #[test]
    fn six_fields_have_seconds_first() {
        let e = CronExpr::parse("*/10 * * * * *").expect("parses");
        let start = Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 1)
            .single()
            .expect("valid date");
        let next = e.schedule.after(&start).next().expect("next");
        assert_eq!(next.timestamp() - start.timestamp(), 9);
    }

    fn minutes_of_the_hour(expr: &str) -> Vec<u32> {
        use chrono::Timelike;
        // From just before 00:00 to just before 01:00.
        let start = Utc
            .with_ymd_and_hms(2025, 12, 31, 23, 59, 59)
            .single()
            .expect("valid date");
        let end = start + chrono::Duration::hours(1);
        let parsed = CronExpr::parse(expr).expect("parses");
        parsed
            .schedule
            .after(&start)
            .take_while(|t| *t < end)
            .map(|t| t.minute())
            .collect()
    }

    #[test]
    fn steps_past_the_field_fire_at_its_first_value_as_in_dagster() {
        // croniter (Dagster): range(0, 60, 180) == [0].
        assert_eq!(minutes_of_the_hour("*/180 * * * *"), vec![0]);
        assert_eq!(minutes_of_the_hour("*/60 * * * *"), vec![0]);
        assert_eq!(minutes_of_the_hour("*/45 * * * *"), vec![0, 45]);
        assert_eq!(minutes_of_the_hour("10-20/7 * * * *"), vec![10, 17]);
        assert_eq!(minutes_of_the_hour("50/20 * * * *"), vec![50]);
        assert_eq!(minutes_of_the_hour("5,*/30 * * * *"), vec![0, 5, 30]);
        let hourly = CronExpr::parse("*/60 * * * *").expect("parses");
        let start = Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 30, 0)
            .single()
            .expect("valid date");
        let next: Vec<_> = hourly.schedule.after(&start).take(2).collect();
        assert_eq!(next[0].timestamp() - start.timestamp(), 30 * 60);
        assert_eq!(next[1].timestamp() - next[0].timestamp(), 3600);
        assert!(CronExpr::parse("0 */48 * * *").is_ok());
    }

    #[test]
    fn errors_name_the_users_field_not_the_rewrite() {
        let e = CronExpr::parse("61 * * * *").unwrap_err();
        assert_eq!(e, "minute 61 in `61` is out of range 0-59");
        let e = CronExpr::parse("0 24 * * *").unwrap_err();
        assert!(e.contains("hour 24") && e.contains("0-23"), "{e}");
        let e = CronExpr::parse("*/0 * * * *").unwrap_err();
        assert!(e.contains("step `0`"), "{e}");
        let e = CronExpr::parse("30-10 * * * *").unwrap_err();
        assert!(e.contains("backwards"), "{e}");
        // Hostile sizes fail on the range, before anything is expanded.
        let e = CronExpr::parse("0-4294967295/1 * * * *").unwrap_err();
        assert!(e.contains("out of range 0-59"), "{e}");
        let e = CronExpr::parse("*/99999999999999999999 * * * *").unwrap_err();
        assert!(e.contains("whole number of 1 or more"), "{e}");
        assert!(
            CronExpr::parse("*/4000000000 * * * *").is_ok(),
            "a huge step is one value"
        );
        let e = CronExpr::parse("0 0 * FOO *").unwrap_err();
        assert!(
            !e.contains("0 0 0"),
            "the internal 6-field form leaked: {e}"
        );
    }

    #[test]
    fn bad_expressions_say_why() {
        assert!(CronExpr::parse("* * *")
            .unwrap_err()
            .contains("expected 5 fields"));
        assert!(CronExpr::parse("61 * * * *").is_err());
        assert!(CronExpr::parse("0 0 * * 9")
            .unwrap_err()
            .contains("out of range"));
    }
}
