//! What a backtest prints and writes: lines per metric or a row per sweep
//! combination, JSON for scripts, and `--out`'s `points.csv`, `sweep.csv`
//! and plots.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use arrow::array::{
    ArrayRef, Float64Array, Int8Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use serde_json::json;

use super::overrides::shown;
use super::{BacktestArgs, Run};
use crate::config::BatchSpec;
use crate::domain::{fmt_us, Judgement, JudgementFacts, MetricType, Series};
use crate::pipeline::backtest::evaluate::{Scores, Tally};
use crate::pipeline::backtest::Replayed;

/// Events listed per metric and kind on the terminal (all are in --out and --json).
const LISTED: usize = 10;

pub fn report(spec: &BatchSpec, args: &BacktestArgs, runs: &[Run]) -> anyhow::Result<()> {
    if args.json {
        let doc = json!({
            "batch": spec.metric_batch,
            "runs": runs.iter().map(run_json).collect::<Vec<_>>(),
        });
        outln_raw(&serde_json::to_string_pretty(&doc)?);
    } else if runs.len() == 1 {
        print_run(spec, &runs[0]);
    } else {
        print_sweep(runs);
    }
    if let Some(dir) = &args.out {
        if runs.len() == 1 {
            write_points(&dir.join("points.csv"), &runs[0])?;
            let plots = write_plots(spec, dir, &runs[0])?;
            errln!(
                "wrote {} and {plots} plots",
                dir.join("points.csv").display()
            );
        } else {
            std::fs::write(dir.join("sweep.csv"), sweep_csv(runs))
                .with_context(|| format!("writing {}", dir.join("sweep.csv").display()))?;
            errln!(
                "wrote {} and combination-1..{}/points.csv",
                dir.join("sweep.csv").display(),
                runs.len()
            );
        }
    }
    Ok(())
}

/// Make `--out DIR` (and a folder per combination when there are several)
/// before anything is replayed, so a path that cannot take them is said
/// at once.
pub fn prepare(dir: &Path, combinations: usize) -> anyhow::Result<()> {
    if dir.exists() && !dir.is_dir() {
        anyhow::bail!("--out {}: it is a file, not a folder", dir.display());
    }
    let make = |d: &Path| {
        std::fs::create_dir_all(d).with_context(|| format!("--out: creating {}", d.display()))
    };
    make(dir)?;
    if combinations > 1 {
        for i in 0..combinations {
            make(&combination_dir(dir, i))?;
        }
    }
    Ok(())
}

/// Where combination `i` (from 0) of a sweep writes its points.
pub fn combination_dir(dir: &Path, i: usize) -> std::path::PathBuf {
    dir.join(format!("combination-{}", i + 1))
}

/// JSON goes out as it is: escaping it for a terminal would change it.
fn outln_raw(text: &str) {
    println!("{text}");
}

fn print_run(spec: &BatchSpec, run: &Run) {
    outln!(
        "batch {} ({}), replayed in {:.2}s:",
        spec.metric_batch,
        shown(&run.assignments),
        run.seconds
    );
    for (metric, r) in &run.metrics {
        let first = r
            .first_model_us
            .map(|t| format!("first model {}", fmt_us(t)))
            .or_else(|| r.last_skip.as_ref().map(|w| format!("never trained: {w}")))
            .unwrap_or_else(|| "never trained".into());
        outln!(
            "  {metric}: {} observations, {} to {}; {} trainings, {first}; {} alerts, {} threshold alerts, {} changes",
            r.values.len(),
            r.timestamps_us.first().map(|t| fmt_us(*t)).unwrap_or_default(),
            r.timestamps_us.last().map(|t| fmt_us(*t)).unwrap_or_default(),
            r.trainings,
            r.alerts.len(),
            r.threshold_alerts.len(),
            r.changes.len()
        );
        if r.never_arrived > 0 {
            outln!(
                "    note: {} observations past the schedule's horizon (the year 2100) never arrived",
                r.never_arrived
            );
        }
        list(MetricType::Alert, "alert", &r.alerts);
        list(
            MetricType::ThresholdAlert,
            "threshold alert",
            &r.threshold_alerts,
        );
        list(MetricType::Change, "change", &r.changes);
        if let Some(t) = run.tallies.get(metric) {
            outln!("    against the labels: {}", scores_line(&t.scores()));
        }
    }
    if let Some(t) = &run.overall {
        outln!("overall against the labels: {}", scores_line(&t.scores()));
        let s = t.scores();
        outln!(
            "window scores (0 = never alerts, 100 = perfect): standard {}, reward low FP {}, reward low FN {}",
            opt(s.score_standard, 1),
            opt(s.score_reward_low_fp, 1),
            opt(s.score_reward_low_fn, 1)
        );
    }
}

fn list(kind: MetricType, word: &str, js: &[Judgement]) {
    for j in js.iter().take(LISTED) {
        let f = JudgementFacts::read(kind, j.metadata.as_ref());
        let value = f.value.map(|v| format!(" value {v}")).unwrap_or_default();
        let driver = f
            .driver
            .filter(|d| d.timestamp_us != j.timestamp_us)
            .map(|d| format!(", driven by {} (value {})", fmt_us(d.timestamp_us), d.value))
            .unwrap_or_default();
        outln!("    {word} {}{value}{driver}", fmt_us(j.timestamp_us));
    }
    if js.len() > LISTED {
        outln!(
            "    ... {} more {word}s (--out or --json lists all)",
            js.len() - LISTED
        );
    }
}

fn opt(v: Option<f64>, decimals: usize) -> String {
    v.map(|x| format!("{x:.decimals$}"))
        .unwrap_or_else(|| "-".into())
}

fn scores_line(s: &Scores) -> String {
    let t = &s.tally;
    format!(
        "{}/{} windows alerted, {}/{} alerts in a window; precision {}, recall {}, F1 {}; {:.2} false alerts per 1000 observations; median delay {}; score {} (standard)",
        t.windows_detected,
        t.windows,
        t.detections_in_windows,
        t.detections,
        opt(s.precision, 3),
        opt(s.recall, 3),
        opt(s.f1, 3),
        s.false_per_1000,
        s.median_delay_s.map(delay).unwrap_or_else(|| "-".into()),
        opt(s.score_standard, 1)
    )
}

fn delay(seconds: f64) -> String {
    match seconds {
        s if s < 120.0 => format!("{s:.0}s"),
        s if s < 7200.0 => format!("{:.1}m", s / 60.0),
        s => format!("{:.1}h", s / 3600.0),
    }
}

fn counts(run: &Run) -> (usize, usize, usize) {
    run.metrics.values().fold((0, 0, 0), |(a, t, c), r| {
        (
            a + r.alerts.len(),
            t + r.threshold_alerts.len(),
            c + r.changes.len(),
        )
    })
}

fn print_sweep(runs: &[Run]) {
    let labelled = runs.iter().any(|r| r.overall.is_some());
    let mut header = "#   alerts thold changes".to_string();
    if labelled {
        header.push_str("     F1  prec  recall false/1k  std  lowFP  lowFN");
    }
    header.push_str("  values");
    outln!("{header}");
    for (i, r) in runs.iter().enumerate() {
        let (a, t, c) = counts(r);
        let mut line = format!("{:<3} {a:>6} {t:>5} {c:>7}", i + 1);
        if let Some(s) = r.overall.as_ref().map(Tally::scores) {
            line.push_str(&format!(
                " {:>6} {:>5} {:>7} {:>8.2} {:>5} {:>6} {:>6}",
                opt(s.f1, 3),
                opt(s.precision, 2),
                opt(s.recall, 2),
                s.false_per_1000,
                opt(s.score_standard, 1),
                opt(s.score_reward_low_fp, 1),
                opt(s.score_reward_low_fn, 1)
            ));
        }
        line.push_str(&format!("  {}", shown(&r.assignments)));
        outln!("{line}");
    }
}

fn sweep_csv(runs: &[Run]) -> String {
    let mut out = String::from(
        "combination,values,alerts,threshold_alerts,changes,f1,precision,recall,false_per_1000,median_delay_s,score_standard,score_reward_low_fp,score_reward_low_fn\n",
    );
    for (i, r) in runs.iter().enumerate() {
        let (a, t, c) = counts(r);
        let s = r.overall.as_ref().map(Tally::scores);
        let f = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
        let values = shown(&r.assignments).replace('"', "\"\"");
        out.push_str(&format!(
            "{},\"{values}\",{a},{t},{c},{},{},{},{},{},{},{},{}\n",
            i + 1,
            f(s.as_ref().and_then(|s| s.f1)),
            f(s.as_ref().and_then(|s| s.precision)),
            f(s.as_ref().and_then(|s| s.recall)),
            f(s.as_ref().map(|s| s.false_per_1000)),
            f(s.as_ref().and_then(|s| s.median_delay_s)),
            f(s.as_ref().and_then(|s| s.score_standard)),
            f(s.as_ref().and_then(|s| s.score_reward_low_fp)),
            f(s.as_ref().and_then(|s| s.score_reward_low_fn)),
        ));
    }
    out
}

fn judgement_json(kind: MetricType, j: &Judgement, raised_us: Option<&i64>) -> serde_json::Value {
    let f = JudgementFacts::read(kind, j.metadata.as_ref());
    json!({
        "timestamp": fmt_us(j.timestamp_us),
        "raised": raised_us.map(|t| fmt_us(*t)),
        "value": f.value,
        "score": f.score,
        "threshold": f.threshold,
        "driver": f.driver.map(|d| json!({
            "timestamp": fmt_us(d.timestamp_us),
            "value": d.value,
            "score": d.score,
            "typical_low": d.typical_low,
            "typical_high": d.typical_high,
        })),
    })
}

fn run_json(run: &Run) -> serde_json::Value {
    let values: BTreeMap<&str, &str> = run
        .assignments
        .iter()
        .map(|a| (a.key.as_str(), a.text.as_str()))
        .collect();
    let metrics: BTreeMap<&String, serde_json::Value> = run
        .metrics
        .iter()
        .map(|(m, r)| {
            let all = |kind, js: &[Judgement], raised: &[i64]| {
                js.iter()
                    .enumerate()
                    .map(|(i, j)| judgement_json(kind, j, raised.get(i)))
                    .collect::<Vec<_>>()
            };
            (
                m,
                json!({
                    "observations": r.values.len(),
                    "trainings": r.trainings,
                    "first_model": r.first_model_us.map(fmt_us),
                    "alerts": all(MetricType::Alert, &r.alerts, &r.raised_us.alerts),
                    "threshold_alerts": all(
                        MetricType::ThresholdAlert,
                        &r.threshold_alerts,
                        &r.raised_us.threshold_alerts
                    ),
                    "changes": all(MetricType::Change, &r.changes, &r.raised_us.changes),
                    "labels": run.tallies.get(m).map(Tally::scores),
                }),
            )
        })
        .collect();
    json!({
        "values": values,
        "seconds": run.seconds,
        "metrics": metrics,
        "overall": run.overall.as_ref().map(Tally::scores),
    })
}

/// Per observation: 1 where a judgement of `js` was stored.
fn marks(r: &Replayed, js: &[&Judgement]) -> Vec<f64> {
    let mut v = vec![0.0; r.timestamps_us.len()];
    for j in js {
        if let Ok(i) = r.timestamps_us.binary_search(&j.timestamp_us) {
            v[i] = 1.0;
        }
    }
    v
}

pub fn write_points(path: &Path, run: &Run) -> anyhow::Result<()> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("metric_name", DataType::Utf8, false),
        Field::new(
            "metric_timestamp",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        ),
        Field::new("metric_value", DataType::Float64, false),
        Field::new("score", DataType::Float64, true),
        Field::new("score_smooth", DataType::Float64, true),
        Field::new("alert", DataType::Int8, false),
        Field::new("change", DataType::Int8, false),
    ]));
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = arrow::csv::WriterBuilder::new()
        .with_header(true)
        .with_timestamp_format("%Y-%m-%d %H:%M:%S".into())
        .build(std::io::BufWriter::new(file));
    for (metric, r) in &run.metrics {
        let known = |v: &[f64]| -> ArrayRef {
            Arc::new(Float64Array::from_iter(
                v.iter().map(|x| (!x.is_nan()).then_some(*x)),
            ))
        };
        let flags = |v: Vec<f64>| -> ArrayRef {
            Arc::new(Int8Array::from_iter_values(v.into_iter().map(|x| x as i8)))
        };
        let alerts: Vec<&Judgement> = r.alerts.iter().chain(&r.threshold_alerts).collect();
        let changes: Vec<&Judgement> = r.changes.iter().collect();
        let b = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec![metric.as_str(); r.values.len()])),
                Arc::new(TimestampMicrosecondArray::from(r.timestamps_us.clone())),
                Arc::new(Float64Array::from(r.values.clone())),
                known(&r.score),
                known(&r.score_smooth),
                flags(marks(r, &alerts)),
                flags(marks(r, &changes)),
            ],
        )?;
        w.write(&b)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// A PNG per metric, alerts marked on the observations that drove them.
fn write_plots(spec: &BatchSpec, dir: &Path, run: &Run) -> anyhow::Result<usize> {
    let mut n = 0;
    for (metric, r) in &run.metrics {
        let mut s = Series {
            timestamps_us: r.timestamps_us.clone(),
            values: r.values.clone(),
            extra: Default::default(),
        };
        let alerts: Vec<&Judgement> = r.alerts.iter().chain(&r.threshold_alerts).collect();
        let mut driver = vec![f64::NAN; r.values.len()];
        for j in &r.alerts {
            let f = JudgementFacts::read(MetricType::Alert, j.metadata.as_ref());
            if let (Ok(i), Some(d)) = (r.timestamps_us.binary_search(&j.timestamp_us), f.driver) {
                driver[i] = d.timestamp_us as f64;
            }
        }
        s.extra.insert("metric_score".into(), r.score.clone());
        s.extra.insert("metric_alert".into(), marks(r, &alerts));
        s.extra.insert(
            "metric_change".into(),
            marks(r, &r.changes.iter().collect::<Vec<_>>()),
        );
        s.extra.insert("alert_driver_us".into(), driver);
        s.mark_alerts_at_drivers();
        let png = crate::drawing::render_png(&spec.metric_batch, metric, &s, run.threshold)?;
        let path = dir.join(format!("{}.png", crate::file_names::file_stem(metric)));
        std::fs::write(&path, png).with_context(|| format!("writing {}", path.display()))?;
        n += 1;
    }
    Ok(n)
}
