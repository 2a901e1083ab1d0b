//! The SQL that reads observations the way a batch's models see them. With
//! `preprocess_params.freq` set, a metric is resampled into bins before it
//! is scored, and its scores (so its alerts) are stamped on the bins'
//! labels, which no observation's own time matches: the alert, dashboard
//! and plot templates must put observations in the same bins to meet them.
//! Every template gets three variables for that:
//!
//! - `bin_timestamp_sql`: an expression of `metric_timestamp`, its bin's
//!   label (bins counted from the Unix epoch, as the native preprocess
//!   counts them), or the column itself when the batch does not resample;
//! - `bin_value_sql`: `metric_value` aggregated over a bin as `freq_agg`
//!   says, or `avg(metric_value)` (the rows of one timestamp) otherwise;
//!   the templates apply it to one value per timestamp (the rows of a
//!   timestamp averaged first), as the models' preprocess is fed;
//! - `bin_empty_value_sql`: what a bin with no observation resamples to,
//!   `0` for `count` and `sum` (such a bin is scored, and a drop to none is
//!   the anomaly a count exists to catch), `NULL` otherwise (its value is
//!   NaN and it has no features, so no score).
//!
//! All three are made here from a parsed frequency and a fixed list of
//! aggregates, never from the batch's text, so they add nothing a batch
//! author could not already write into their own SQL.

use serde_yaml_ng::{Mapping, Value};

use super::sections::freq_micros;

pub const TIMESTAMP_VAR: &str = "bin_timestamp_sql";
pub const VALUE_VAR: &str = "bin_value_sql";
pub const EMPTY_VAR: &str = "bin_empty_value_sql";

/// `context` with the three variables set from its `preprocess_params` (a
/// batch's own keys of the same names are replaced).
pub fn with_bin_variables(context: &Mapping) -> Mapping {
    let params = context.get("preprocess_params").and_then(Value::as_mapping);
    let text = |key: &str| params.and_then(|p| p.get(key)).and_then(Value::as_str);
    let freq_us = text("freq").and_then(freq_micros);
    let agg = text("freq_agg").unwrap_or("mean");
    let (timestamp, value) = bin_sql(freq_us, agg);
    let empty = match (freq_us, agg) {
        (Some(_), "count" | "sum") => "0",
        _ => "NULL",
    };
    let mut out = context.clone();
    out.insert(TIMESTAMP_VAR.into(), Value::String(timestamp));
    out.insert(VALUE_VAR.into(), Value::String(value));
    out.insert(EMPTY_VAR.into(), Value::String(empty.into()));
    out
}

/// The two expressions for bins of `freq_us` (None: no resampling) and the
/// aggregate `agg`. An aggregate the preprocess refuses reads as the mean
/// here; the train and score jobs report it.
fn bin_sql(freq_us: Option<i64>, agg: &str) -> (String, String) {
    let Some(f) = freq_us else {
        return ("metric_timestamp".into(), "avg(metric_value)".into());
    };
    // Euclidean remainder: a time before 1970 goes to the bin below it,
    // as `div_euclid` puts it in the native preprocess.
    let timestamp = format!(
        "make_timestamp(epoch_us(metric_timestamp) - ((epoch_us(metric_timestamp) % {f}) + {f}) % {f})"
    );
    let value = match agg {
        "sum" => "sum(metric_value)",
        "min" => "min(metric_value)",
        "max" => "max(metric_value)",
        "median" => "median(metric_value)",
        "first" => "arg_min(metric_value, metric_timestamp)",
        "last" => "arg_max(metric_value, metric_timestamp)",
        "count" => "count(metric_value)",
        _ => "avg(metric_value)",
    };
    (timestamp, value.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(yaml: &str) -> (String, String) {
        let (t, v, _) = all_vars(yaml);
        (t, v)
    }

    fn all_vars(yaml: &str) -> (String, String, String) {
        let m: Mapping = serde_yaml_ng::from_str(yaml).expect("yaml");
        let out = with_bin_variables(&m);
        let get = |k: &str| out.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        (get(TIMESTAMP_VAR), get(VALUE_VAR), get(EMPTY_VAR))
    }

    #[test]
    fn only_a_resampled_count_or_sum_fills_its_empty_bins() {
        for (yaml, empty) in [
            ("preprocess_params: {freq: 1h, freq_agg: count}", "0"),
            ("preprocess_params: {freq: 1h, freq_agg: sum}", "0"),
            ("preprocess_params: {freq: 1h, freq_agg: mean}", "NULL"),
            ("preprocess_params: {freq_agg: count}", "NULL"),
        ] {
            assert_eq!(all_vars(yaml).2, empty, "{yaml}");
        }
    }

    #[test]
    fn without_freq_an_observation_is_its_own_row() {
        for yaml in [
            "a: 1",
            "preprocess_params: {diff_n: 1}",
            "preprocess_params: {freq: null}",
            "preprocess_params: {freq: '3 weeks'}",
        ] {
            assert_eq!(
                vars(yaml),
                ("metric_timestamp".into(), "avg(metric_value)".into()),
                "{yaml}"
            );
        }
    }

    #[test]
    fn with_freq_observations_go_to_epoch_aligned_bins() {
        let (t, v) = vars("preprocess_params: {freq: 30min, freq_agg: last}");
        assert!(t.contains("% 1800000000"), "{t}");
        assert_eq!(v, "arg_max(metric_value, metric_timestamp)");
        let (_, v) = vars("preprocess_params: {freq: 1h}");
        assert_eq!(v, "avg(metric_value)");
    }

    #[test]
    fn a_batch_cannot_set_the_variables_itself() {
        let (t, v) = vars("bin_timestamp_sql: 'x; DROP TABLE m'\nbin_value_sql: y\na: 1");
        assert_eq!(
            (t.as_str(), v.as_str()),
            ("metric_timestamp", "avg(metric_value)")
        );
    }
}
