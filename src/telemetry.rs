//! The process's own figures, for Prometheus: one registry per process
//! ([`global`]), written where things happen (a run recorded in the
//! history, an alert delivered, a sandbox instance made and dropped) and
//! read by the dashboard's `/metrics`. Names start with `sandstack_`.
//! Global because it counts the process as a whole, as a metrics
//! exporter does; nothing reads it back to decide anything.

use std::sync::atomic::AtomicU64;
use std::sync::OnceLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunLabels {
    pub batch: String,
    pub job: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    pub batch: String,
    pub job: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BatchLabels {
    pub batch: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelLabels {
    pub channel: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// 5 ms to about 80 min, doubling.
fn seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 20))
}

/// 10^6 to 10^12 fuel units, by tens (ingest_fuel defaults to 2*10^10).
fn fuel() -> Histogram {
    Histogram::new(exponential_buckets(1e6, 10.0, 7))
}

pub struct Telemetry {
    registry: Registry,
    pub runs: Family<RunLabels, Counter>,
    pub run_seconds: Histograms<JobLabels>,
    pub run_fuel: Histograms<BatchLabels>,
    pub rows_ingested: Family<BatchLabels, Counter>,
    pub alerts_sent: Family<ChannelLabels, Counter>,
    pub delivery_failures: Family<ChannelLabels, Counter>,
    pub scheduler_lag: Histogram,
    pub sandbox_instances: Gauge,
    pub database_bytes: Gauge<u64, AtomicU64>,
}

impl Telemetry {
    fn new() -> Telemetry {
        let mut t = Telemetry {
            registry: Registry::with_prefix("sandstack"),
            runs: Family::default(),
            run_seconds: Family::new_with_constructor(seconds),
            run_fuel: Family::new_with_constructor(fuel),
            rows_ingested: Family::default(),
            alerts_sent: Family::default(),
            delivery_failures: Family::default(),
            scheduler_lag: seconds(),
            sandbox_instances: Gauge::default(),
            database_bytes: Gauge::default(),
        };
        let r = &mut t.registry;
        r.register(
            "runs",
            "Runs recorded in the run history, by batch, job and status",
            t.runs.clone(),
        );
        r.register_with_unit(
            "run_duration",
            "Wall-clock time of a run",
            Unit::Seconds,
            t.run_seconds.clone(),
        );
        r.register(
            "run_fuel",
            "Wasm fuel an ingest run used",
            t.run_fuel.clone(),
        );
        r.register(
            "rows_ingested",
            "Metric rows stored by ingest runs",
            t.rows_ingested.clone(),
        );
        r.register(
            "alerts_sent",
            "Alert messages delivered, by channel",
            t.alerts_sent.clone(),
        );
        r.register(
            "alert_delivery_failures",
            "Alert messages a channel could not deliver (after its retries) or was not configured for",
            t.delivery_failures.clone(),
        );
        r.register_with_unit(
            "scheduler_lag",
            "From a run's scheduled tick to its start",
            Unit::Seconds,
            t.scheduler_lag.clone(),
        );
        r.register(
            "sandbox_instances_in_use",
            "Python sandbox instances running now",
            t.sandbox_instances.clone(),
        );
        r.register_with_unit(
            "database_size",
            "What the database takes: a DuckDB file with its write-ahead log, or the whole PostgreSQL database",
            Unit::Bytes,
            t.database_bytes.clone(),
        );
        t
    }

    /// A run written to the history.
    pub fn run_recorded(&self, run: &RecordedRun<'_>) {
        let job = label(run.job);
        let batch = label(run.batch);
        self.runs
            .get_or_create(&RunLabels {
                batch: batch.clone(),
                job: job.clone(),
                status: label(run.status),
            })
            .inc();
        if !run.worked {
            return;
        }
        self.run_seconds
            .get_or_create(&JobLabels {
                batch: batch.clone(),
                job: job.clone(),
            })
            .observe(run.seconds);
        self.scheduler_lag.observe(run.lag_seconds.max(0.0));
        if run.job == "ingest" {
            let b = BatchLabels { batch };
            self.rows_ingested.get_or_create(&b).inc_by(run.rows);
            if run.fuel > 0 {
                self.run_fuel.get_or_create(&b).observe(run.fuel as f64);
            }
        }
    }

    /// One channel's delivery of one message.
    pub fn delivered(&self, channel: &str, ok: bool) {
        let labels = ChannelLabels {
            channel: label(channel),
        };
        if ok {
            self.alerts_sent.get_or_create(&labels).inc();
        } else {
            self.delivery_failures.get_or_create(&labels).inc();
        }
    }

    /// Everything, in Prometheus' text format (OpenMetrics).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// A label value. Batch names are held to `[A-Za-z0-9_.-]` at load and the
/// others are sandstack's own words, but a label is escaped whatever it
/// holds: `escape::prometheus_label` makes it one line with no control
/// character, and prometheus-client then quotes `\\`, `"` and `\n`.
fn label(text: &str) -> String {
    crate::escape::prometheus_label(text)
}

/// What the history holds of a run, for [`Telemetry::run_recorded`].
pub struct RecordedRun<'a> {
    pub batch: &'a str,
    pub job: &'a str,
    pub status: &'a str,
    /// Whether it ran (not skipped or interrupted before it began).
    pub worked: bool,
    pub seconds: f64,
    pub lag_seconds: f64,
    pub rows: u64,
    pub fuel: u64,
}

/// A sandbox instance counted while it lives.
pub struct InstanceInUse(());

impl InstanceInUse {
    pub fn start() -> InstanceInUse {
        global().sandbox_instances.inc();
        InstanceInUse(())
    }
}

impl Drop for InstanceInUse {
    fn drop(&mut self) {
        global().sandbox_instances.dec();
    }
}

/// The process's figures.
pub fn global() -> &'static Telemetry {
    static T: OnceLock<Telemetry> = OnceLock::new();
    T.get_or_init(Telemetry::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let t = Telemetry::new();
        t.run_recorded(&RecordedRun {
            batch: "b\"} 1\nsandstack_forged_total{x=\"\x1b[2J\r",
            job: "ingest",
            status: "failed",
            worked: false,
            seconds: 0.0,
            lag_seconds: 0.0,
            rows: 0,
            fuel: 0,
        });
        let text = t.encode();
        let line = text
            .lines()
            .find(|l| l.starts_with("sandstack_runs_total{"))
            .expect("the run's line");
        assert_eq!(
            line,
            r#"sandstack_runs_total{batch="b\"} 1\\nsandstack_forged_total{x=\"\\u{1b}[2J\\u{d}",job="ingest",status="failed"} 1"#
        );
        assert!(!text.contains("\nsandstack_forged"), "{text}");
    }

    #[test]
    fn names_are_prefixed_and_runs_counted_by_label() {
        let t = Telemetry::new();
        t.run_recorded(&RecordedRun {
            batch: "b",
            job: "ingest",
            status: "succeeded",
            worked: true,
            seconds: 0.2,
            lag_seconds: 0.01,
            rows: 7,
            fuel: 5_000_000,
        });
        t.delivered("email", false);
        let text = t.encode();
        for line in [
            "sandstack_runs_total{batch=\"b\",job=\"ingest\",status=\"succeeded\"} 1",
            "sandstack_rows_ingested_total{batch=\"b\"} 7",
            "sandstack_alert_delivery_failures_total{channel=\"email\"} 1",
            "# TYPE sandstack_run_duration_seconds histogram",
            "sandstack_sandbox_instances_in_use 0",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }
}

#[cfg(test)]
mod dashboard_tests {
    use super::*;

    /// Every metric the shipped Grafana dashboard queries is one this
    /// process exports (a renamed metric would leave a panel empty).
    #[test]
    fn the_grafana_dashboard_queries_only_exported_metrics() {
        let dash: serde_json::Value =
            serde_json::from_str(include_str!("../deploy/grafana-dashboard.json")).expect("JSON");
        // Families with no member yet are not written: give each one.
        let t = Telemetry::new();
        t.run_recorded(&RecordedRun {
            batch: "b",
            job: "ingest",
            status: "failed",
            worked: true,
            seconds: 1.0,
            lag_seconds: 0.1,
            rows: 1,
            fuel: 1,
        });
        t.delivered("slack", true);
        t.delivered("slack", false);
        let exported = t.encode();
        let mut queried = 0;
        for panel in dash["panels"].as_array().expect("panels") {
            for target in panel["targets"].as_array().expect("targets") {
                let expr = target["expr"].as_str().expect("expr");
                for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                    let Some(name) = word.strip_prefix("sandstack_") else {
                        continue;
                    };
                    let base = ["_bucket", "_count", "_sum", "_total"]
                        .iter()
                        .find_map(|s| name.strip_suffix(s))
                        .unwrap_or(name);
                    assert!(
                        exported.contains(&format!("# TYPE sandstack_{base} ")),
                        "the dashboard queries sandstack_{name}, which is not exported"
                    );
                    queried += 1;
                }
            }
        }
        assert!(queried >= 9, "{queried}");
    }
}
