//! Which SQL the shipped templates are written in. They are DuckDB's;
//! when the store is PostgreSQL, every template a batch takes from the
//! shipped defaults (not its own) is swapped for its PostgreSQL version
//! (`metrics/defaults/sql/postgres/`) before the batch is rendered. A
//! batch's own templates are run as written: if they are DuckDB's SQL,
//! PostgreSQL's error names the template and says so.

use serde_yaml_ng::Value;

use super::{shipped, with_values, BatchSpec, MetricsFolder};

/// The SQL the store speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SqlDialect {
    #[default]
    DuckDb,
    Postgres,
}

/// (template key, PostgreSQL text) for the shipped templates whose DuckDB
/// SQL PostgreSQL does not take; the others are the same in both.
const POSTGRES: &[(&str, &str)] = &[
    (
        "train_sql",
        include_str!("../../metrics/defaults/sql/postgres/train.sql"),
    ),
    (
        "alert_sql",
        include_str!("../../metrics/defaults/sql/postgres/alerts.sql"),
    ),
    (
        "change_sql",
        include_str!("../../metrics/defaults/sql/postgres/change.sql"),
    ),
    (
        "llmalert_sql",
        include_str!("../../metrics/defaults/sql/postgres/llmalert.sql"),
    ),
    (
        "delete_sql",
        include_str!("../../metrics/defaults/sql/postgres/delete.sql"),
    ),
    (
        "summary_sql",
        include_str!("../../metrics/defaults/sql/postgres/summary.sql"),
    ),
];

/// `spec` with its shipped templates in `dialect`.
pub fn in_dialect(
    spec: &BatchSpec,
    dialect: SqlDialect,
) -> Result<BatchSpec, Vec<super::ConfigError>> {
    if dialect == SqlDialect::DuckDb {
        return Ok(spec.clone());
    }
    let own = shipped::overridden(spec);
    let swaps: Vec<(&str, Value)> = POSTGRES
        .iter()
        .filter(|(key, _)| spec.source.merged.contains_key(*key) && !own.iter().any(|o| o == key))
        .map(|(key, text)| (*key, Value::String((*text).to_string())))
        .collect();
    if swaps.is_empty() {
        return Ok(spec.clone());
    }
    with_values(spec, &swaps)
}

/// Every batch of `folder` in `dialect`; a batch that fails to render is
/// reported and dropped, as at load.
pub fn folder_in_dialect(mut folder: MetricsFolder, dialect: SqlDialect) -> MetricsFolder {
    if dialect == SqlDialect::DuckDb {
        return folder;
    }
    let batches = std::mem::take(&mut folder.batches);
    for spec in batches {
        match in_dialect(&spec, dialect) {
            Ok(s) => folder.batches.push(s),
            Err(errors) => folder.errors.extend(errors),
        }
    }
    folder
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_postgres_templates_use_no_duckdb_only_sql() {
        for (key, text) in POSTGRES {
            for duck in ["epoch_us", "make_timestamp", "arg_max", "QUALIFY"] {
                assert!(!text.contains(duck), "{key} uses {duck}");
            }
        }
    }

    /// The PostgreSQL files are whole copies, to read as plain SQL; this
    /// keeps them the DuckDB ones with only the dialect's words changed.
    #[test]
    fn each_postgres_template_is_the_duckdb_one_in_postgresqls_words() {
        let sql = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("metrics/defaults/sql");
        let after_first_line = |t: &str| t.split_once('\n').map(|(_, rest)| rest.to_string());
        for name in ["train", "alerts", "change", "llmalert", "delete", "summary"] {
            let file = format!("{name}.sql");
            let duck = std::fs::read_to_string(sql.join(&file)).expect("duckdb template");
            let pg =
                std::fs::read_to_string(sql.join("postgres").join(&file)).expect("pg template");
            let derived = duck
                .replace(
                    "make_timestamp(epoch_us(now()))",
                    "(now() AT TIME ZONE 'UTC')",
                )
                .replace(
                    "arg_max(metric_value, metric_timestamp)",
                    "(array_agg(metric_value ORDER BY metric_timestamp DESC))[1]",
                );
            assert_eq!(after_first_line(&pg), after_first_line(&derived), "{file}");
            assert!(
                POSTGRES.iter().any(|(_, text)| *text == pg),
                "{file} is compiled in"
            );
        }
    }

    #[test]
    fn shipped_templates_switch_and_a_batchs_own_stay() {
        let dir = tempfile::tempdir().expect("tmp");
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let defaults = dir.path().join("defaults");
        std::fs::create_dir_all(defaults.join("sql")).expect("mkdir");
        std::fs::copy(
            root.join("metrics/defaults/defaults.yaml"),
            defaults.join("defaults.yaml"),
        )
        .expect("copy");
        for f in std::fs::read_dir(root.join("metrics/defaults/sql")).expect("ls") {
            let f = f.expect("entry").path();
            if f.is_file() {
                std::fs::copy(&f, defaults.join("sql").join(f.file_name().expect("name")))
                    .expect("copy");
            }
        }
        std::fs::create_dir_all(defaults.join("python")).expect("mkdir");
        std::fs::copy(
            root.join("metrics/defaults/python/preprocess.py"),
            defaults.join("python/preprocess.py"),
        )
        .expect("copy");
        std::fs::write(
            dir.path().join("b.yaml"),
            "metric_batch: b\ningest_sql: SELECT 1\nsummary_sql: SELECT arg_max(1, 2)\n",
        )
        .expect("write");
        let folder = super::super::load(dir.path(), &Default::default());
        assert!(folder.errors.is_empty(), "{:?}", folder.errors);
        let pg = folder_in_dialect(folder, SqlDialect::Postgres);
        let b = &pg.batches[0];
        let train = b
            .sql
            .get("train_sql")
            .map(String::as_str)
            .unwrap_or_default();
        assert!(train.contains("now() AT TIME ZONE 'UTC'"), "{train}");
        assert!(!train.contains("epoch_us"));
        assert!(
            train.contains("metric_batch = 'b'"),
            "rendered with the batch's values"
        );
        let summary = b
            .sql
            .get("summary_sql")
            .map(String::as_str)
            .unwrap_or_default();
        assert_eq!(
            summary.trim(),
            "SELECT arg_max(1, 2)",
            "the batch's own, as written"
        );
    }
}
