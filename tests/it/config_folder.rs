//! The metrics folder loader: merge, includes, env overrides, errors.

use sandstack::config::{ConfigError, IngestSource, Job, ScheduleStatus};

use crate::support::{repo, Folder};

const SQL_BATCH: &str = "metric_batch: \"b\"\ningest_sql: \"select 1\"\n";

#[test]
fn shipped_folder_loads_every_example_without_errors() {
    let folder = crate::support::shipped_folder();
    assert!(folder.warnings.is_empty(), "{:?}", folder.warnings);
    let hn = folder.batch("hn_top_stories_scores").expect("hn batch");
    assert_eq!(hn.table_key.to_string(), "metrics_hackernews");
    assert_eq!(hn.schedules[&Job::Ingest].cron.text, "45 6 * * *");
    let IngestSource::Python(src) = &hn.ingest else {
        panic!("hn is a Python batch")
    };
    assert_eq!(src.filename, "examples/hackernews/hn_top_stories_scores.py");
    assert_eq!(src.function, "ingest");
    assert!(hn.sql.contains_key("train_sql") && hn.sql.contains_key("summary_sql"));
}

/// The seed document the product was made from is kept in the project
/// (`docs/seed/`), so that this comparison runs in every clone.
#[test]
fn hackernews_example_is_the_seed_code_exactly() {
    let seed = std::fs::read_to_string(repo().join("docs/seed/python-data-source.md"))
        .expect("docs/seed/python-data-source.md");
    let start = seed.find("```python\n").expect("python block") + "```python\n".len();
    let end = start + seed[start..].find("```").expect("block end");
    let shipped = std::fs::read_to_string(
        repo().join("metrics/examples/hackernews/hn_top_stories_scores.py"),
    )
    .expect("shipped example");
    assert_eq!(shipped, &seed[start..end]);
}

#[test]
fn batch_overrides_defaults_shallowly() {
    let f = Folder::empty();
    f.write(
        "defaults/defaults.yaml",
        "alert_threshold: 0.8\ntrain_max_n: 100\npreprocess_params:\n  diff_n: 2\n  smooth_n: 7\n",
    );
    f.write(
        "b.yaml",
        &format!("{SQL_BATCH}alert_threshold: 0.5\npreprocess_params:\n  lags_n: 1\n"),
    );
    let spec = f.spec("b", &[]);
    assert_eq!(spec.alert.threshold, 0.5);
    assert_eq!(spec.train.max_n, 100);
    // The batch's map replaced the default map whole: smooth_n and diff_n
    // are the built-in defaults, not the defaults file's 7 and 2.
    assert_eq!(spec.preprocess_params.lags_n, 1);
    assert_eq!(spec.preprocess_params.smooth_n, 3);
    assert_eq!(spec.preprocess_params.diff_n, 1);
}

#[test]
fn nested_includes_render_with_config_variables() {
    let f = Folder::with_defaults();
    f.write(
        "b/sql/outer.sql",
        "select * from ({% include \"./b/sql/inner.sql\" %}) where '{{ metric_batch }}' = 'b'",
    );
    f.write("b/sql/inner.sql", "select 1 as x from {{ table_key }}");
    f.write("b/b.yaml", "metric_batch: b\ntable_key: \"{{ metric_batch }}_t\"\ningest_sql: >\n  {% include \"./b/sql/outer.sql\" %}\n");
    let spec = f.spec("b", &[]);
    assert_eq!(spec.table_key.to_string(), "b_t");
    assert_eq!(
        spec.ingest,
        IngestSource::Sql("select * from (select 1 as x from b_t) where 'b' = 'b'\n".into())
    );
    assert!(
        spec.sql["train_sql"].contains("FROM b_t"),
        "{}",
        spec.sql["train_sql"]
    );
}

#[test]
fn a_missing_include_names_the_file_and_key() {
    let f = Folder::with_defaults();
    f.write(
        "b/b.yaml",
        "metric_batch: b\ningest_sql: >\n  {% include \"./b/nope.sql\" %}\n",
    );
    let folder = f.load(&[]);
    assert_eq!(
        folder.errors,
        vec![ConfigError::Template {
            file: f.path().join("b/b.yaml"),
            key: "ingest_sql".into(),
            message: "include \"./b/nope.sql\" not found: no such file b/nope.sql in the metrics \
                      folder (in ingest_sql line 1)"
                .into(),
        }]
    );
    assert!(folder.batch("b").is_none());
}

#[test]
fn includes_may_not_leave_the_metrics_folder() {
    let outside = tempfile::tempdir().expect("tempdir");
    std::fs::write(outside.path().join("secret.sql"), "select 'secret'").expect("write");
    let f = Folder::with_defaults();
    f.write(
        "b.yaml",
        "metric_batch: b\ningest_sql: >\n  {% include \"../secret.sql\" %}\n",
    );
    let err = f.load(&[]).errors.first().expect("an error").to_string();
    assert_eq!(
        err,
        format!(
            "{}: key `ingest_sql`: include \"../secret.sql\" escapes the metrics folder: includes must stay inside the metrics folder (in ingest_sql line 1)",
            f.shown("b.yaml")
        )
    );
    #[cfg(unix)]
    {
        std::fs::remove_file(f.path().join("b.yaml")).expect("rm");
        f.write("b/.keep", "");
        std::os::unix::fs::symlink(outside.path(), f.path().join("b/link")).expect("symlink");
        f.write(
            "b/b.yaml",
            "metric_batch: b\ningest_sql: >\n  {% include \"./b/link/secret.sql\" %}\n",
        );
        let err = f.load(&[]).errors.first().expect("an error").to_string();
        assert!(
            err.contains("resolves outside the metrics folder (through a symlink)"),
            "{err}"
        );
    }
}

#[test]
fn env_overrides_are_typed_and_applied_after_the_files() {
    let f = Folder::with_defaults();
    f.write("b.yaml", &format!("{SQL_BATCH}alert_always: true\n"));
    let spec = f.spec(
        "b",
        &[
            ("ANOMSTACK__B__ALERT_ALWAYS", "False"),
            ("ANOMSTACK__B__ALERT_THRESHOLD", "0.25"),
            ("ANOMSTACK__B__INGEST_CRON_SCHEDULE", "*/30 * * * *"),
            ("ANOMSTACK__B__INGEST_DEFAULT_SCHEDULE_STATUS", "RUNNING"),
            ("ANOMSTACK__B__ALERT_METHODS", "email"),
            ("ANOMSTACK_TABLE_KEY", "from_env"),
            ("ANOMSTACK__OTHER__ALERT_THRESHOLD", "0.99"),
        ],
    );
    assert!(!spec.alert.always);
    assert_eq!(spec.alert.threshold, 0.25);
    assert_eq!(spec.schedules[&Job::Ingest].cron.text, "*/30 * * * *");
    assert_eq!(spec.schedules[&Job::Ingest].status, ScheduleStatus::Running);
    assert_eq!(
        spec.alert.methods,
        vec![sandstack::config::AlertMethod::Email]
    );
    assert_eq!(spec.table_key.to_string(), "from_env");
}

#[test]
fn a_bad_value_from_the_environment_names_the_variable() {
    let f = Folder::with_defaults();
    f.write("b.yaml", SQL_BATCH);
    let folder = f.load(&[("ANOMSTACK__B__ALERT_THRESHOLD", "high")]);
    assert_eq!(
        folder.errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
        vec!["environment variable ANOMSTACK__B__ALERT_THRESHOLD: key `alert_threshold`: expected a number, found string \"high\"".to_string()]
    );
}

#[test]
fn bad_types_name_file_key_and_value() {
    let f = Folder::with_defaults();
    f.write(
        "b.yaml",
        &format!("{SQL_BATCH}alert_threshold: \"high\"\ntrain_max_n: -3\nalert_always: maybe\n"),
    );
    let errors: Vec<String> = f.load(&[]).errors.iter().map(ToString::to_string).collect();
    let file = f.shown("b.yaml");
    assert_eq!(
        errors,
        vec![
            format!(
                "{file}: key `train_max_n`: expected a whole number of 0 or more, found number -3"
            ),
            format!("{file}: key `alert_threshold`: expected a number, found string \"high\""),
            format!("{file}: key `alert_always`: expected true or false, found string \"maybe\""),
        ]
    );
}

#[test]
fn unknown_keys_warn_with_a_suggestion() {
    let f = Folder::with_defaults();
    f.write(
        "b.yaml",
        &format!("{SQL_BATCH}alert_treshold: 0.5\nfavourite_colour: blue\n"),
    );
    let folder = f.load(&[]);
    assert!(folder.errors.is_empty());
    assert_eq!(
        folder.warnings,
        vec![
            format!(
                "{}: unknown key `alert_treshold` is ignored (did you mean `alert_threshold`?)",
                f.shown("b.yaml")
            ),
            format!(
                "{}: unknown key `favourite_colour` is ignored",
                f.shown("b.yaml")
            ),
        ]
    );
}

#[test]
fn duplicate_batch_names_refuse_both_files() {
    let f = Folder::with_defaults();
    f.write("a/one.yaml", SQL_BATCH)
        .write("z/two.yaml", SQL_BATCH);
    let folder = f.load(&[]);
    assert_eq!(
        folder
            .errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        vec![format!(
            "metric_batch `b` is claimed by both {} and {}: a batch name belongs to one file, so none of \
             them loads; rename all but one",
            f.shown("a/one.yaml"),
            f.shown("z/two.yaml")
        )]
    );
    assert_eq!(
        folder.batches.len(),
        0,
        "neither file's batch loads: which is the real one is not the loader's guess"
    );
}

#[test]
fn bad_cron_expressions_are_errors_naming_the_key() {
    let f = Folder::with_defaults();
    f.write(
        "b.yaml",
        &format!("{SQL_BATCH}ingest_cron_schedule: \"61 * * * *\"\nscore_cron_schedule: \"* *\"\n"),
    );
    let errors: Vec<String> = f.load(&[]).errors.iter().map(ToString::to_string).collect();
    let file = f.shown("b.yaml");
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].starts_with(&format!(
            "{file}: key `ingest_cron_schedule`: invalid cron expression \"61 * * * *\": "
        )),
        "{}",
        errors[0]
    );
    assert_eq!(
        errors[1],
        format!("{file}: key `score_cron_schedule`: invalid cron expression \"* *\": expected 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds first, found 2")
    );
}

#[test]
fn a_batch_without_metric_batch_is_an_error() {
    let f = Folder::with_defaults();
    f.write("b.yaml", "ingest_sql: select 1\n");
    assert_eq!(
        f.load(&[])
            .errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        vec![format!(
            "{}: missing required key `metric_batch`: every batch file must name its batch",
            f.shown("b.yaml")
        )]
    );
}

#[test]
fn warehouse_batches_load_and_an_unknown_db_is_an_error_naming_the_choices() {
    let f = Folder::with_defaults();
    f.write(
        "bq.yaml",
        "metric_batch: bq\ndb: bigquery\ningest_sql: select 1\n",
    )
    .write(
        "sf.yaml",
        "metric_batch: sf\ndb: Snowflake\ningest_sql: select 1\n",
    )
    .write(
        "turso.yaml",
        "metric_batch: turso\ndb: turso\ningest_sql: select 1\n",
    )
    .write(
        "gcs.yaml",
        "metric_batch: gcs\nmodel_path: gs://bucket/models\ningest_sql: select 1\n",
    )
    .write(
        "typo.yaml",
        "metric_batch: typo\ndb: bigqeury\ningest_sql: select 1\n",
    )
    .write(
        "bq3.yaml",
        "metric_batch: bq3\ndb: bigquery\ntable_key: proj.dataset.readings\ningest_sql: select 1\n",
    )
    .write(
        "duck3.yaml",
        "metric_batch: duck3\ntable_key: a.b.c\ningest_sql: select 1\n",
    )
    .write("ok.yaml", "metric_batch: ok\ningest_sql: select 1\n");
    let folder = f.load(&[]);
    assert!(folder.skipped.is_empty(), "{:?}", folder.skipped);
    let mut loaded: Vec<&str> = folder
        .batches
        .iter()
        .map(|b| b.metric_batch.as_str())
        .collect();
    loaded.sort_unstable();
    assert_eq!(loaded, ["bq", "bq3", "gcs", "ok", "sf", "turso"]);
    // The warehouse's own three-part name: stored here as its last two.
    assert_eq!(
        folder.batch("bq3").expect("bq3").table_key.to_string(),
        "dataset.readings"
    );
    assert_eq!(
        folder.batch("bq").expect("bq").db,
        sandstack::config::Db::BigQuery
    );
    assert_eq!(
        folder.batch("turso").expect("turso").db,
        sandstack::config::Db::Sqlite
    );
    let mut errors: Vec<String> = folder.errors.iter().map(|e| e.to_string()).collect();
    errors.sort();
    assert_eq!(errors.len(), 2, "{errors:?}");
    // A DuckDB batch's key is sandstack's own table: two parts at most.
    assert!(
        errors[0].contains("duck3.yaml") && errors[0].contains("table_key"),
        "{errors:?}"
    );
    assert!(
        errors[1].contains("unknown db `bigqeury` (did you mean `bigquery`?)")
            && errors[1].contains("duckdb, sqlite, postgres, clickhouse, bigquery, snowflake"),
        "{errors:?}"
    );
    // gs:// is a store sandstack knows: no warning; an unknown one does
    // not stop a batch either (its ingest runs).
    assert!(
        !folder.warnings.iter().any(|w| w.contains("batch `gcs`")),
        "{:?}",
        folder.warnings
    );
}

#[test]
fn disabled_batches_load_but_are_not_enabled() {
    let f = Folder::with_defaults();
    f.write("b.yaml", &format!("{SQL_BATCH}disable_batch: True\n"));
    let folder = f.load(&[]);
    assert!(folder.batch("b").expect("loaded").disable_batch);
    assert_eq!(folder.enabled_batches().count(), 0);
}

#[test]
fn undefined_template_variables_are_errors() {
    let f = Folder::with_defaults();
    f.write(
        "b.yaml",
        "metric_batch: b\ningest_sql: \"select {{ no_such_key }}\"\n",
    );
    let errors: Vec<String> = f.load(&[]).errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        errors,
        vec![format!(
            "{}: key `ingest_sql`: undefined variable `no_such_key` (line 1): template variables are the batch's config keys",
            f.shown("b.yaml")
        )]
    );
}

#[test]
fn misspelled_choices_fail_validate_with_a_did_you_mean() {
    let f = Folder::with_defaults();
    f.write(
        "b.yaml",
        &format!(
            "{SQL_BATCH}alert_methods: \"emial,slack\"\nmodel_combination_method: maen\n\
             train_default_schedule_status: RUNING\n\
             model_configs:\n  - model_name: IForrest\n"
        ),
    );
    let (code, text) = crate::support::validate(f.path(), &[]);
    assert_eq!(code, Some(1), "{text}");
    for expected in [
        "key `alert_methods`: unknown alert method `emial` (did you mean `email`?): use email, slack, webhook, log",
        "key `model_combination_method`: unknown model_combination_method `maen` (did you mean `mean`?): use mean, min, max",
        "key `train_default_schedule_status`: unknown schedule status `RUNING` (did you mean `RUNNING`?): use RUNNING, STOPPED",
        "key `model_configs`: expected a list of {model_name, model_tag, model_params}",
        "unknown model_name `IForrest` (did you mean `IForest`?): use PCA, KNN, IForest, ECOD, COPOD, HBOS, LOF, MAD, OCSVM",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

/// A model parameter sandstack's model does not compute (PyOD's KNN
/// `method`, a misspelt `n_neighbours`) fails validate, naming the model
/// and what it takes, instead of training as if it were not there.
#[test]
fn model_params_a_model_does_not_take_fail_validate() {
    let f = Folder::with_defaults();
    f.write(
        "b.yaml",
        &format!(
            "{SQL_BATCH}model_configs:\n  - model_name: KNN\n    model_tag: knn_median\n    \
             model_params: {{method: median, contamination: 0.01}}\n  - model_name: LOF\n    \
             model_params: {{n_neighbours: 10}}\n"
        ),
    );
    let (code, text) = crate::support::validate(f.path(), &[]);
    assert_eq!(code, Some(1), "{text}");
    for expected in [
        "key `model_configs`: model 1 (`knn_median`, KNN): model_params.method is not a parameter sandstack's KNN takes; it takes n_neighbors, contamination. Remove it, or pick a model that has it",
        "model 2 (`lof`, LOF): model_params.n_neighbours is not a parameter sandstack's LOF takes (did you mean `n_neighbors`?); it takes n_neighbors, contamination",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    // The parameters it does take load.
    f.write(
        "b.yaml",
        &format!(
            "{SQL_BATCH}model_configs:\n  - model_name: KNN\n    \
             model_params: {{n_neighbors: 7, contamination: 0.01}}\n"
        ),
    );
    let (code, text) = crate::support::validate(f.path(), &[]);
    assert_eq!(code, Some(0), "{text}");
}

/// A resampling frequency out of range (a microsecond would make millions
/// of bins a metric, a year and more one bin) or an unknown aggregate fails
/// validate, not the first train.
#[test]
fn resampling_out_of_range_fails_validate() {
    let f = Folder::with_defaults();
    for (params, expected) in [
        (
            "{freq: 1us}",
            "freq `1us` is not a frequency sandstack takes: use one from 1s to 366D",
        ),
        (
            "{freq: 106751D}",
            "freq `106751D` is not a frequency sandstack takes",
        ),
        (
            "{freq: 5min, freq_agg: mode}",
            "freq_agg `mode` is not supported: use mean, sum, min, max, median, first, last, count",
        ),
    ] {
        f.write(
            "b.yaml",
            &format!("{SQL_BATCH}preprocess_params: {params}\n"),
        );
        let (code, text) = crate::support::validate(f.path(), &[]);
        assert_eq!(code, Some(1), "{params}: {text}");
        assert!(
            text.contains("key `preprocess_params`") && text.contains(expected),
            "{params}: {text}"
        );
    }
    f.write(
        "b.yaml",
        &format!("{SQL_BATCH}preprocess_params: {{freq: 30s, freq_agg: last}}\n"),
    );
    let (code, text) = crate::support::validate(f.path(), &[]);
    assert_eq!(code, Some(0), "{text}");
}

/// `llmalert_model: random` (Anomstack's per-run pick) fails validate when
/// the batch's llmalert runs, rather than every llmalert run failing.
#[test]
fn a_random_llm_model_fails_validate_where_llmalert_runs() {
    let f = Folder::with_defaults();
    f.write(
        "b.yaml",
        &format!("{SQL_BATCH}disable_llmalert: false\nllmalert_model: Random\n"),
    );
    let (code, text) = crate::support::validate(f.path(), &[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("key `llmalert_model`: llmalert_model: random (Anomstack's pick among ANOMSTACK_LLMALERT_MODELS) would make runs unrepeatable; name one model"),
        "{text}"
    );
    // With llmalert off the key is never used.
    f.write(
        "b.yaml",
        &format!("{SQL_BATCH}disable_llmalert: true\nllmalert_model: random\n"),
    );
    let (code, text) = crate::support::validate(f.path(), &[]);
    assert_eq!(code, Some(0), "{text}");
}

#[test]
fn a_backfill_widens_the_scoring_window_by_rendering_again() {
    let f = Folder::with_defaults();
    f.write("b.yaml", &format!("{SQL_BATCH}score_max_n: 7\n"));
    let spec = f.spec("b", &[]);
    assert!(spec.sql["score_sql"].contains("recency_rank <= 7"));
    let wide = sandstack::pipeline::backfill::scoring_spec(&spec, 500).expect("renders");
    assert_eq!((wide.score.max_n, wide.alert.recent_n), (500, 500));
    assert!(
        wide.sql["score_sql"].contains("recency_rank <= 500"),
        "{}",
        wide.sql["score_sql"]
    );
    // Narrower than what the batch sets: the batch's own values stay.
    let same = sandstack::pipeline::backfill::scoring_spec(&spec, 3).expect("renders");
    assert_eq!(same.score.max_n, 7);
    assert_eq!(same.sql["score_sql"], spec.sql["score_sql"]);
}

#[test]
fn anomstack_templates_sandstack_does_not_run_are_not_rendered() {
    // Anomstack's dashboard passes last_n and cutoff_time at run time, and
    // its prompt_fn may include a file that is gone: neither stops a batch.
    let f = Folder::with_defaults();
    let defaults = std::fs::read_to_string(repo().join("metrics/defaults/defaults.yaml"))
        .expect("defaults")
        .replace("./defaults/sql/dashboard.sql", "./defaults/sql/dash.sql");
    f.write(
        "defaults/defaults.yaml",
        &format!("{defaults}\nprompt_fn: >\n  {{% include \"./defaults/python/prompt.py\" %}}\nmy_own_key: \"{{{{ not_defined }}}}\"\n"),
    );
    f.write(
        "defaults/sql/dash.sql",
        "select * from {{ table_key }}\n{% if cutoff_time is defined %}where metric_timestamp >= '{{ cutoff_time }}'{% else %}limit {{ last_n }}{% endif %}\n",
    );
    f.write("b.yaml", SQL_BATCH);
    let folder = f.load(&[]);
    assert!(folder.errors.is_empty(), "{:?}", folder.errors);
    assert!(
        folder.notes.iter().any(|n| n.contains("does not use")
            && n.contains("prompt_fn")
            && !n.contains("llmalert")),
        "{:?}",
        folder.notes
    );
    let b = folder.batch("b").expect("b");
    assert!(
        !b.sql.contains_key("llmalert_sql"),
        "llmalert is off: its template is not rendered"
    );
    assert!(
        !b.sql.contains_key("dashboard_sql"),
        "rendered at use, not at load"
    );
    let at = |params: &[(&str, serde_yaml_ng::Value)]| {
        sandstack::config::render_at_use(b, "dashboard_sql", params)
            .expect("renders")
            .expect("set")
    };
    assert!(at(&[("last_n", 7u64.into())]).contains("limit 7"));
    assert!(
        at(&[("cutoff_time", "2026-01-01T00:00:00".into())]).contains(">= '2026-01-01T00:00:00'")
    );
    // A dashboard_sql that needs a variable no run gives fails at load.
    f.write("defaults/sql/dash.sql", "select {{ nowhere }}\n");
    let errors: Vec<String> = f.load(&[]).errors.iter().map(ToString::to_string).collect();
    assert!(
        errors.len() == 1 && errors[0].contains("`nowhere`") && errors[0].contains("dashboard_sql"),
        "{errors:?}"
    );
}

#[test]
fn an_error_in_the_defaults_is_listed_once_naming_the_batches_it_stops() {
    let f = Folder::with_defaults();
    let defaults = std::fs::read_to_string(repo().join("metrics/defaults/defaults.yaml"))
        .expect("defaults")
        .replace(
            "alert_sql: >\n  {% include \"./defaults/sql/alerts.sql\" %}",
            "alert_sql: \"{{ nope }}\"",
        );
    f.write("defaults/defaults.yaml", &defaults);
    for name in ["a", "b", "c"] {
        f.write(
            &format!("{name}.yaml"),
            &format!("metric_batch: {name}\ningest_sql: \"select 1\"\n"),
        );
    }
    // c also has a cron error of its own: it is listed beside the template's.
    f.write(
        "c.yaml",
        "metric_batch: c\ningest_sql: \"select 1\"\ntrain_cron_schedule: \"61 * * * *\"\n",
    );
    let errors: Vec<String> = f.load(&[]).errors.iter().map(ToString::to_string).collect();
    let template: Vec<&String> = errors.iter().filter(|e| e.contains("`nope`")).collect();
    assert_eq!(template.len(), 1, "{errors:#?}");
    assert!(
        template[0].contains("stops 3 batches: `a`, `b`, `c`"),
        "{}",
        template[0]
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("c.yaml") && e.contains("minute 61 in `61` is out of range 0-59")),
        "the template error hid the cron error: {errors:#?}"
    );
}

#[test]
fn anomstack_ignore_examples_leaves_out_the_examples_batches() {
    let f = Folder::with_defaults();
    f.write(
        "examples/a/a.yaml",
        "metric_batch: a\ningest_sql: \"select 1\"\n",
    );
    f.write("mine/b.yaml", "metric_batch: b\ningest_sql: \"select 1\"\n");
    let names = |folder: &sandstack::config::MetricsFolder| -> Vec<String> {
        folder
            .batches
            .iter()
            .map(|b| b.metric_batch.clone())
            .collect()
    };
    assert_eq!(names(&f.load(&[])), ["a", "b"]);
    let ignoring = f.load(&[("ANOMSTACK_IGNORE_EXAMPLES", "yes")]);
    assert_eq!(names(&ignoring), ["b"]);
    assert!(
        ignoring
            .notes
            .iter()
            .any(|n| n.contains("1 batch files under")),
        "{:?}",
        ignoring.notes
    );
    // Anomstack's switch is the word yes, nothing else.
    assert_eq!(
        names(&f.load(&[("ANOMSTACK_IGNORE_EXAMPLES", "true")])),
        ["a", "b"]
    );
}
