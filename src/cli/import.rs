//! `sandstack import BATCH FILE...`: a batch's history from CSV, Parquet or
//! newline-delimited JSON files, with a progress bar and a summary.

use std::path::PathBuf;
use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{find_batch, load_folder, Cli};
use crate::domain::fmt_us;
use crate::jobs::import::cells::{TimeFormat, TimeReader};
use crate::jobs::import::read::{FileFormat, ReadCaps};
use crate::jobs::import::{self, ImportOptions, ImportReport, Progress};

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Shapes (chosen from the header):
  long    a time column, metric_name and metric_value (Anomstack's own shape; --name-column, --value-column)
  wide    a time column and one column per metric, named by its header (--columns picks some)
  single  a time column and one value column, named with --metric (timestamp,value as many exports have it)

Times without an offset are wall time in --timezone (UTC by default); times with one (2024-05-01T13:00:00+02:00)
keep it. Empty cells and NaN are skipped and counted; rows the batch already has (same metric and time) are not
stored again. Any cell that cannot be read stops the import with its file, row and column: nothing is stored.

Examples:
  sandstack import my_batch history.csv
  sandstack import my_batch cpu.csv --metric cpu_percent --timestamp-format epoch_s
  sandstack import my_batch export.parquet --timezone Europe/Paris --dry-run")]
pub struct ImportArgs {
    /// The batch (metric_batch) the rows belong to: its table_key, name and time limits and rounding apply.
    pub batch: String,
    /// The files: .csv, .tsv, .parquet, .ndjson or .jsonl (or say which with --format).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// The files' format, whatever their extensions.
    #[arg(long, value_enum)]
    pub format: Option<FileFormat>,
    /// The time column [default: the first of metric_timestamp, timestamp, time, datetime, date, ts, ds].
    #[arg(long, value_name = "COLUMN")]
    pub timestamp_column: Option<String>,
    /// The long shape's metric name column.
    #[arg(long, value_name = "COLUMN", default_value = "metric_name")]
    pub name_column: String,
    /// The value column: the long shape's (default metric_value), or the one --metric names.
    #[arg(long, value_name = "COLUMN")]
    pub value_column: Option<String>,
    /// The metric name for a file with one value column.
    #[arg(long, value_name = "NAME")]
    pub metric: Option<String>,
    /// The wide shape's value columns, comma separated [default: every column but the time].
    #[arg(
        long,
        value_name = "COLUMNS",
        value_delimiter = ',',
        conflicts_with = "metric"
    )]
    pub columns: Vec<String>,
    /// How times are written: auto (ISO-8601 and its relatives), epoch_s, epoch_ms, epoch_us,
    /// epoch_ns, or a strftime pattern such as "%d/%m/%Y %H:%M".
    #[arg(long, value_name = "FORMAT", default_value = "auto", value_parser = clap::value_parser!(TimeFormat))]
    pub timestamp_format: TimeFormat,
    /// The time zone of times written without an offset: an IANA name (Europe/Paris) or UTC.
    #[arg(long, value_name = "ZONE", default_value = "UTC")]
    pub timezone: chrono_tz::Tz,
    /// Refuse a file larger than this (MiB).
    #[arg(long, value_name = "MIB", default_value_t = 1024)]
    pub max_file_mb: u64,
    /// Refuse an import of more rows than this, all files together.
    #[arg(long, value_name = "ROWS", default_value_t = 10_000_000)]
    pub max_rows: u64,
    /// Read and check everything, print what would be stored, store nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn import(cli: &Cli, args: &ImportArgs) -> anyhow::Result<ExitCode> {
    import::check_files(&args.files)?;
    let folder = load_folder(cli)?;
    let spec = find_batch(&folder, &args.batch)?;
    let absent = matches!(&cli.db, crate::store::DbTarget::File(f) if !f.exists());
    let mut store = if args.dry_run && absent {
        // Nothing stored yet to compare with, and a dry run creates nothing.
        crate::store::Store::in_memory()?
    } else {
        match super::open_target(cli)? {
            super::Target::Local(store) => store,
            super::Target::Daemon(d) => return Err(super::daemon::refuse(&d, "import")),
        }
    };
    let opts = ImportOptions {
        format: args.format,
        timestamp_column: args.timestamp_column.clone(),
        name_column: args.name_column.clone(),
        value_column: args.value_column.clone(),
        metric: args.metric.clone(),
        columns: args.columns.clone(),
        time: TimeReader {
            format: args.timestamp_format.clone(),
            zone: args.timezone,
        },
        caps: ReadCaps {
            max_file_bytes: args.max_file_mb.saturating_mul(1 << 20),
            max_rows: args.max_rows,
        },
        dry_run: args.dry_run,
    };
    let total: u64 = args
        .files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    let bar = Bar::new(total);
    let result = import::run(spec, &mut store, &args.files, &opts, &bar);
    bar.0.finish_and_clear();
    let report = result?;
    print_report(
        &spec.metric_batch,
        &spec.table_key.to_string(),
        &report,
        args.dry_run,
    );
    Ok(ExitCode::SUCCESS)
}

/// A byte bar on a terminal; phases as lines otherwise.
struct Bar(ProgressBar);

impl Bar {
    fn new(total: u64) -> Bar {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        if let Ok(style) =
            ProgressStyle::with_template("{msg:40!} [{bar:30}] {bytes}/{total_bytes} ({eta})")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        Bar(bar)
    }
}

impl Progress for Bar {
    fn read(&self, bytes: u64) {
        self.0.inc(bytes);
    }

    fn phase(&self, what: &str) {
        if self.0.is_hidden() {
            errln!("import: {what}");
        } else {
            self.0.set_message(crate::escape::terminal_line(what));
        }
    }
}

fn print_report(batch: &str, table: &str, r: &ImportReport, dry_run: bool) {
    let verb = if dry_run { "would store" } else { "stored" };
    let span = match (r.first_us, r.last_us) {
        (Some(a), Some(b)) => format!(", {} to {} UTC", fmt_us(a), fmt_us(b)),
        _ => String::new(),
    };
    if r.stored == 0 {
        outln!("batch {batch}: nothing new to store in {table}");
    } else {
        let rows = counted(r.stored, "row", "rows");
        let metrics = counted(r.metrics.len(), "metric", "metrics");
        outln!("batch {batch}: {verb} {rows} of {metrics}{span} in {table}");
    }
    for f in &r.files {
        outln!(
            "  {}: {}; {} rows read, {} values",
            f.path.display(),
            f.shape,
            f.rows_read,
            f.values
        );
    }
    let mut skipped = Vec::new();
    if r.empty_values > 0 {
        skipped.push(format!("{} empty or NaN values", r.empty_values));
    }
    if r.already_stored > 0 {
        skipped.push(format!("{} rows the batch already had", r.already_stored));
    }
    if r.repeated > 0 {
        skipped.push(format!(
            "{} rows repeated in the files (the first kept)",
            r.repeated
        ));
    }
    if !skipped.is_empty() {
        outln!("  skipped: {}", skipped.join(", "));
    }
    if r.stored > 0 && !dry_run {
        // The shipped templates look back from now(): history older than
        // their windows is trained on at its own time.
        let old = r
            .last_us
            .is_some_and(|t| chrono::Utc::now().timestamp_micros() - t > 86_400_000_000);
        let at = if old { " --at latest" } else { "" };
        outln!(
            "  next: `sandstack train {batch}{at}`, then `sandstack score {batch}{at}` and `sandstack alert {batch}{at}`"
        );
    }
}

/// `1 metric`, `3 metrics`.
fn counted(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}
