//! `--set KEY=VALUE` and `--sweep KEY=V1,V2,...`: the values a backtest
//! replays the batch with, read as YAML as the batch file would be.

use serde_yaml_ng::Value;

use crate::config::keys;

/// Most combinations one `--sweep` grid may make.
pub const MAX_COMBINATIONS: usize = 1000;

/// A key set to a value.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    pub key: String,
    pub value: Value,
    /// As written.
    pub text: String,
}

/// A key and the values to sweep it over.
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    pub key: String,
    pub values: Vec<(Value, String)>,
}

fn split_key(text: &str) -> Result<(&str, &str), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}`: expected KEY=VALUE"))?;
    let key = key.trim();
    if !keys::is_known(key) {
        let hint = keys::suggest(key)
            .map(|k| format!(" (did you mean {k}?)"))
            .unwrap_or_default();
        return Err(format!(
            "`{key}` is not a key sandstack knows{hint}; `sandstack keys` lists them"
        ));
    }
    Ok((key, value.trim()))
}

fn yaml(key: &str, text: &str) -> Result<Value, String> {
    serde_yaml_ng::from_str(text).map_err(|e| format!("{key}: `{text}` is not a YAML value: {e}"))
}

pub fn parse_set(text: &str) -> Result<Assignment, String> {
    let (key, value) = split_key(text)?;
    Ok(Assignment {
        key: key.to_string(),
        value: yaml(key, value)?,
        text: value.to_string(),
    })
}

pub fn parse_sweep(text: &str) -> Result<Grid, String> {
    let (key, values) = split_key(text)?;
    let values = top_level_items(values)
        .into_iter()
        .map(|v| Ok((yaml(key, &v)?, v)))
        .collect::<Result<Vec<_>, String>>()?;
    if values.is_empty() {
        return Err(format!("--sweep {key}: no values"));
    }
    Ok(Grid {
        key: key.to_string(),
        values,
    })
}

/// `text` split at the commas outside brackets, braces and quotes, so a
/// value may be a YAML list or mapping. Hand-written: a few lines, where a
/// YAML flow sequence would read `a,b` differently from the shell's user.
fn top_level_items(text: &str) -> Vec<String> {
    let mut items = Vec::new();
    let (mut depth, mut quote, mut current) = (0i32, None, String::new());
    for c in text.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '[' | '{') => depth += 1,
            (None, ']' | '}') => depth -= 1,
            (None, ',') if depth == 0 => {
                items.push(std::mem::take(&mut current).trim().to_string());
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    items.push(current.trim().to_string());
    items.retain(|s| !s.is_empty());
    items
}

/// Every combination of the sweeps, each with the `--set` values first.
pub fn combinations(set: &[Assignment], sweep: &[Grid]) -> anyhow::Result<Vec<Vec<Assignment>>> {
    for g in sweep {
        if set.iter().any(|a| a.key == g.key) || sweep.iter().filter(|o| o.key == g.key).count() > 1
        {
            anyhow::bail!("{} is given more than once in --set and --sweep", g.key);
        }
    }
    let total = sweep
        .iter()
        .try_fold(1usize, |n, g| n.checked_mul(g.values.len()))
        .filter(|n| *n <= MAX_COMBINATIONS)
        .ok_or_else(|| {
            anyhow::anyhow!("--sweep makes more than {MAX_COMBINATIONS} combinations: sweep fewer values at once")
        })?;
    let mut out = Vec::with_capacity(total);
    for mut i in 0..total {
        let mut combo = set.to_vec();
        // The last grid varies fastest.
        let mut picks = Vec::new();
        for g in sweep.iter().rev() {
            let (v, text) = &g.values[i % g.values.len()];
            i /= g.values.len();
            picks.push(Assignment {
                key: g.key.clone(),
                value: v.clone(),
                text: text.clone(),
            });
        }
        combo.extend(picks.into_iter().rev());
        out.push(combo);
    }
    Ok(out)
}

/// `key=value key=value`, for a line or a message.
pub fn shown(assignments: &[Assignment]) -> String {
    if assignments.is_empty() {
        return "the batch's own values".into();
    }
    assignments
        .iter()
        .map(|a| format!("{}={}", a.key, a.text))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweeps_split_outside_brackets_and_combine_in_order() {
        let g = parse_sweep(
            "model_configs=[{model_name: ECOD}, {model_name: HBOS}],[{model_name: KNN}]",
        )
        .expect("grid");
        assert_eq!(g.values.len(), 2);
        let t = parse_sweep("alert_threshold=0.7, 0.8").expect("grid");
        let s = parse_sweep("alert_smooth_n=1,3,5").expect("grid");
        let set = parse_set("alert_snooze_n=2").expect("set");
        let combos = combinations(&[set], &[t, s]).expect("combos");
        assert_eq!(combos.len(), 6);
        assert_eq!(
            shown(&combos[0]),
            "alert_snooze_n=2 alert_threshold=0.7 alert_smooth_n=1"
        );
        assert_eq!(
            shown(&combos[5]),
            "alert_snooze_n=2 alert_threshold=0.8 alert_smooth_n=5"
        );
    }

    #[test]
    fn unknown_keys_bad_values_and_huge_grids_are_refused() {
        let e = parse_set("alert_treshold=0.5").expect_err("typo");
        assert!(e.contains("did you mean alert_threshold"), "{e}");
        assert!(parse_set("alert_threshold")
            .expect_err("no =")
            .contains("KEY=VALUE"));
        assert!(parse_set("alert_threshold=[")
            .expect_err("yaml")
            .contains("not a YAML value"));
        let big: Vec<Grid> = (0..4)
            .map(|_| parse_sweep("alert_smooth_n=1,2,3,4,5,6,7,8,9,10").expect("grid"))
            .collect();
        let e = combinations(&[], &big).expect_err("twice").to_string();
        assert!(e.contains("more than once"), "{e}");
        let keys = [
            "alert_smooth_n",
            "alert_snooze_n",
            "alert_recent_n",
            "alert_max_n",
        ];
        let big: Vec<Grid> = keys
            .iter()
            .map(|k| parse_sweep(&format!("{k}=1,2,3,4,5,6,7,8,9,10")).expect("grid"))
            .collect();
        let e = combinations(&[], &big).expect_err("huge").to_string();
        assert!(e.contains("more than 1000"), "{e}");
    }
}
