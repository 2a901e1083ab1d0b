//! Cron expressions as Anomstack writes them (5 fields, POSIX weekday numbers)
//! turned into the `cron` crate's form (seconds first, weekdays 1-7 from Sunday).
//!
//! Hand-written because the `cron` crate numbers weekdays Quartz-style: the
//! POSIX `1` (Monday) means Sunday there, so a migrated batch would silently
//! run on the wrong day without this translation.

use std::str::FromStr;

/// A parsed schedule together with the text the user wrote.
#[derive(Debug, Clone)]
pub struct CronExpr {
    pub text: String,
    pub schedule: cron::Schedule,
}

impl CronExpr {
    /// Parse a 5-field (minute-first) or 6-field (seconds-first) expression.
    pub fn parse(text: &str) -> Result<Self, String> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        let six = match fields.len() {
            5 => {
                let dow = posix_weekdays_to_cron(fields[4])?;
                format!("0 {} {} {} {} {}", fields[0], fields[1], fields[2], fields[3], dow)
            }
            6 => {
                let dow = posix_weekdays_to_cron(fields[5])?;
                format!(
                    "{} {} {} {} {} {}",
                    fields[0], fields[1], fields[2], fields[3], fields[4], dow
                )
            }
            n => {
                return Err(format!(
                    "expected 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds first, found {n}"
                ))
            }
        };
        let schedule = cron::Schedule::from_str(&six).map_err(|e| e.to_string())?;
        Ok(CronExpr {
            text: text.to_string(),
            schedule,
        })
    }
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
