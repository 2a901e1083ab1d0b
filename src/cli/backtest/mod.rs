//! `sandstack backtest BATCH`: replay a batch's stored history through its
//! configuration (or a variant of it, `--set`, or a grid of them,
//! `--sweep`) and say what it would have alerted, scored against labelled
//! windows when `--labels` is given.

mod output;
mod overrides;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{find_batch, load_folder, Cli};
use crate::config::BatchSpec;
use crate::pipeline::backtest::evaluate::{self, Tally};
use crate::pipeline::backtest::labels::{self, Labels};
use crate::pipeline::backtest::{self, Replayed};
use overrides::{Assignment, Grid};

#[derive(Debug, clap::Args)]
#[command(after_help = "\
How it replays: each metric's stored observations arrive in time order (each at the first ingest tick at or
after its timestamp); train, score and alert (threshold alerts included) and change run on their crons, each
seeing only what had arrived by then, as the scheduler would have run them: models retrained on
train_cron_schedule from the rows then in train_sql's window, each observation scored by the model of its time,
alerts with their smoothing and snooze. A STOPPED schedule is replayed as if RUNNING; disable_<job> turns a job
off. llmalert is not replayed. Nothing is written to the batch's table or its model_path. Batches that replace
the shipped train, score, alert or change SQL are refused (the replay follows the shipped templates). A batch's
own preprocess_fn runs in the sandbox at every train and score step, on every core: slower, and only as
repeatable as the function.

Labels (--labels): CSV `metric_name,start,end` (windows) or `metric_name,timestamp` (points, widened by --window,
centred), or JSON {\"metric\": [[\"start\", \"end\"], \"point\", ...]}; times in UTC. The report gives, per metric and
overall, the windows with an alert in them (recall), the alerts in a window (precision), F1, alerts outside every
window per 1,000 observations, the median delay from a window's start to the tick its first alert was raised at, and window scores
(0 = never alerts, 100 = alerts at the start of every window and nowhere else) under the standard, low false
positive and low false negative weightings. An alert and a change at one observation are one detection; alerts
of metrics the labels do not name count as false. The formula is in README.md, \"Tuning detection\".

Examples:
  sandstack backtest my_batch
  sandstack backtest my_batch --labels anomalies.csv --out report/
  sandstack backtest my_batch --labels anomalies.csv --sweep alert_threshold=0.6,0.7,0.8 --sweep alert_smooth_n=1,3
  sandstack backtest my_batch --set 'model_configs=[{model_name: ECOD}]' --json")]
pub struct BacktestArgs {
    /// The batch (metric_batch) whose stored history is replayed.
    pub batch: String,
    /// Replay only observations at or after this UTC time (2024-05-01, 2024-05-01T13:00:00Z).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub from: Option<i64>,
    /// Replay only observations at or before this UTC time.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub to: Option<i64>,
    /// Replay with a key set to a value (YAML, as in the batch file); repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = overrides::parse_set)]
    pub set: Vec<Assignment>,
    /// Replay once per value (comma separated; repeatable: every combination is replayed) and print one
    /// row per combination.
    #[arg(long = "sweep", value_name = "KEY=V1,V2,...", value_parser = overrides::parse_sweep)]
    pub sweep: Vec<Grid>,
    /// Labelled anomaly windows (or points, with --window) to score the alerts against.
    #[arg(long, value_name = "FILE")]
    pub labels: Option<PathBuf>,
    /// How wide a labelled point's window is (centred on it): 30m, 2h, 1d.
    #[arg(long, value_name = "SPAN", value_parser = parse_span)]
    pub window: Option<i64>,
    /// What counts as an alert when scoring against labels: every judgement the batch would send (all),
    /// anomaly and threshold alerts (alerts), or changes.
    #[arg(long, value_enum, default_value = "all")]
    pub detections: Detections,
    /// Write DIR/points.csv (metric_name,metric_timestamp,metric_value,score,score_smooth,alert,change) and
    /// a PNG per metric; with --sweep, DIR/sweep.csv and each combination's points.csv.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print the result as JSON on stdout (progress still goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Refuse to replay more stored observations than this (all metrics together); narrow the range
    /// with --from/--to.
    #[arg(long, value_name = "N", default_value_t = 20_000_000)]
    pub max_observations: usize,
}

/// Which judgements a label scores.
#[derive(Debug, Clone, Copy, PartialEq, clap::ValueEnum)]
pub enum Detections {
    All,
    Alerts,
    Changes,
}

impl Detections {
    /// The timestamps of `r`'s judgements that count.
    /// `r`'s judgements that count: the observation each is stamped with
    /// and when it was raised.
    fn of(self, r: &Replayed) -> Vec<(i64, i64)> {
        let pairs = |js: &[crate::domain::Judgement], raised: &[i64]| -> Vec<(i64, i64)> {
            js.iter()
                .zip(raised)
                .map(|(j, t)| (j.timestamp_us, *t))
                .collect()
        };
        let alerts = || {
            let mut a = pairs(&r.alerts, &r.raised_us.alerts);
            a.extend(pairs(&r.threshold_alerts, &r.raised_us.threshold_alerts));
            a
        };
        match self {
            Detections::All => {
                let mut a = alerts();
                a.extend(pairs(&r.changes, &r.raised_us.changes));
                a
            }
            Detections::Alerts => alerts(),
            Detections::Changes => pairs(&r.changes, &r.raised_us.changes),
        }
    }
}

fn parse_time(text: &str) -> Result<i64, String> {
    crate::jobs::import::cells::TimeReader::UTC
        .parse(text)
    .map_err(|_| format!("`{text}` is not a time: use a UTC time such as 2024-05-01T13:00:00Z, 2024-05-01 13:00 or 2024-05-01"))
}

fn parse_span(text: &str) -> Result<i64, String> {
    super::backfill::parse_span("--window", text)
        .map(|d| d.as_micros().min(i64::MAX as u128) as i64)
        .map_err(|e| e.to_string())
}

/// One replay of the batch: the values it ran with and what came of it.
pub struct Run {
    pub assignments: Vec<Assignment>,
    /// The combination's `alert_threshold`, for its plots.
    pub threshold: f64,
    pub metrics: std::collections::BTreeMap<String, Replayed>,
    /// Per metric, against the labels (empty without them).
    pub tallies: std::collections::BTreeMap<String, Tally>,
    pub overall: Option<Tally>,
    pub seconds: f64,
}

pub fn backtest(cli: &Cli, args: &BacktestArgs) -> anyhow::Result<ExitCode> {
    if args.window.is_some() && args.labels.is_none() {
        anyhow::bail!("--window widens labelled points: give --labels FILE too");
    }
    if let (Some(from), Some(to)) = (args.from, args.to) {
        if from > to {
            anyhow::bail!("--from is after --to: nothing to replay");
        }
    }
    let folder = load_folder(cli)?;
    let spec = find_batch(&folder, &args.batch)?;
    // Everything that can be wrong with the request is found before the
    // first replay: each combination's values, and where results go.
    let combos = overrides::combinations(&args.set, &args.sweep)?;
    let variants = combos
        .iter()
        .map(|assignments| variant(spec, assignments))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if let Some(dir) = &args.out {
        output::prepare(dir, variants.len())?;
    }
    let store = match super::open_target(cli)? {
        super::Target::Local(store) => store,
        super::Target::Daemon(d) => return Err(super::daemon::refuse(&d, "backtest")),
    };
    let history = backtest::load_history(spec, &store, args.from, args.to, args.max_observations)?;
    drop(store);
    let labels = match &args.labels {
        Some(path) => Some(read_labels(path, args, &history)?),
        None => None,
    };
    let points: usize = history.values().map(|h| h.values.len()).sum();
    if !args.json {
        errln!(
            "backtest {}: {} observations of {} metrics, {} replay{} on {} threads",
            spec.metric_batch,
            points,
            history.len(),
            variants.len(),
            if variants.len() == 1 { "" } else { "s" },
            rayon::current_num_threads()
        );
    }
    let sweeping = variants.len() > 1;
    let mut runs = Vec::new();
    for (i, (assignments, variant)) in combos.into_iter().zip(&variants).enumerate() {
        let bar = bar(points as u64, &format!("replay {}", i + 1));
        let started = Instant::now();
        let result = backtest::run(variant, &history, &|n| bar.inc(n));
        bar.finish_and_clear();
        let mut run = Run {
            assignments,
            threshold: variant.alert.threshold,
            metrics: result?,
            tallies: Default::default(),
            overall: None,
            seconds: started.elapsed().as_secs_f64(),
        };
        if let Some(l) = &labels {
            score_against(&mut run, l, args.detections);
        }
        if sweeping {
            // Each combination's points go out as it ends; only its
            // judgements and tallies are kept for the report.
            if let Some(dir) = &args.out {
                output::write_points(&output::combination_dir(dir, i).join("points.csv"), &run)?;
            }
            for r in run.metrics.values_mut() {
                r.drop_points();
            }
        }
        runs.push(run);
    }
    output::report(spec, args, &runs)?;
    Ok(ExitCode::SUCCESS)
}

/// The batch as if its file also set `assignments`.
fn variant(spec: &BatchSpec, assignments: &[Assignment]) -> anyhow::Result<BatchSpec> {
    let values: Vec<(&str, serde_yaml_ng::Value)> = assignments
        .iter()
        .map(|a| (a.key.as_str(), a.value.clone()))
        .collect();
    let v = if values.is_empty() {
        spec.clone()
    } else {
        crate::config::with_values(spec, &values).map_err(|errors| {
            let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            anyhow::anyhow!(
                "with {} (from --set/--sweep): {}",
                overrides::shown(assignments),
                shown.join("; ")
            )
        })?
    };
    backtest::check_replayable(&v)?;
    Ok(v)
}

fn read_labels(
    path: &std::path::Path,
    args: &BacktestArgs,
    history: &std::collections::BTreeMap<String, backtest::MetricHistory>,
) -> anyhow::Result<Labels> {
    let mut l = labels::read(path, args.window)?;
    let dropped = l.restrict(args.from, args.to);
    if dropped > 0 && !args.json {
        errln!(
            "note: {dropped} labelled windows outside --from/--to left out; {} scored",
            l.count()
        );
    }
    labels::check(&l, history, path)?;
    Ok(l)
}

fn score_against(run: &mut Run, labels: &Labels, detections: Detections) {
    let mut overall = Tally::default();
    for (metric, r) in &run.metrics {
        let windows = labels.windows.get(metric).map(Vec::as_slice).unwrap_or(&[]);
        let t = evaluate::tally(r.values.len(), windows, &detections.of(r));
        overall.add(&t);
        run.tallies.insert(metric.clone(), t);
    }
    run.overall = Some(overall);
}

/// A bar of observations replayed, on a terminal only.
fn bar(total: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} observations ({eta})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_string());
    bar
}
