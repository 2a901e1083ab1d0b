//! The operator's policy: ceilings and powers no batch may exceed, refused
//! at load with the file, key, value and limit; the rest of the folder
//! loads. Without a policy, operator-level powers are warned about.

use sandstack::config::{self, MetricsFolder, Policy};
use sandstack::store::Store;

use crate::support::{key, run_ingest, Folder};

const SQL: &str =
    "ingest_sql: \"SELECT now() AS metric_timestamp, 'm' AS metric_name, 1 AS metric_value\"\n";

/// A policy file outside the metrics folder (the operator's).
struct OperatorPolicy {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    policy: Policy,
}

fn policy(yaml: &str) -> OperatorPolicy {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("policy.yaml");
    std::fs::write(&path, yaml).expect("write");
    let policy = Policy::load(&path).expect("policy");
    OperatorPolicy {
        _dir: dir,
        path,
        policy,
    }
}

fn load(f: &Folder, p: &Policy) -> MetricsFolder {
    config::load_with_policy(f.path(), &Default::default(), p)
}

fn errors(folder: &MetricsFolder) -> Vec<String> {
    folder.errors.iter().map(ToString::to_string).collect()
}

#[test]
fn without_a_policy_operator_powers_load_with_a_warning_each() {
    let f = Folder::with_defaults();
    f.write(
        "b.yaml",
        &format!("metric_batch: \"b\"\n{SQL}ingest_env: [ANOMSTACK_ALERT_EMAIL_PASSWORD]\nhttp_allow_private: true\nhttp_rewrite: {{\"https://a.test\": \"http://127.0.0.1:1\"}}\n"),
    );
    let folder = load(&f, &Policy::none());
    assert!(folder.errors.is_empty(), "{:?}", folder.errors);
    let warned: Vec<&String> = folder
        .warnings
        .iter()
        .filter(|w| w.contains("which only an operator should grant"))
        .collect();
    assert_eq!(warned.len(), 3, "{:?}", folder.warnings);
    assert!(warned[0].contains("uses ingest_env (ANOMSTACK_ALERT_EMAIL_PASSWORD)"));
    assert!(warned[1].contains("uses http_allow_private"));
    assert!(warned[2].contains("uses http_rewrite"));
}

#[test]
fn a_batch_over_a_ceiling_is_refused_and_the_rest_load_under_it() {
    let f = Folder::with_defaults();
    let p = policy("max:\n  ingest_memory_mb: 512\n  ingest_timeout_s: 30\n");
    f.write(
        "big.yaml",
        &format!("metric_batch: \"big\"\n{SQL}ingest_memory_mb: 1024\n"),
    );
    f.write(
        "slow.yaml",
        &format!("metric_batch: \"slow\"\n{SQL}ingest_timeout_s: 30.5\n"),
    );
    f.write("small.yaml", &format!("metric_batch: \"small\"\n{SQL}"));
    let folder = load(&f, &p.policy);
    let policy_path = &p.path;
    assert_eq!(
        errors(&folder),
        vec![
            format!(
                "{}: key `ingest_memory_mb`: asks for 1024, but the policy {} allows at most 512: change the batch, or ask the operator to change the policy",
                f.shown("big.yaml"),
                policy_path.display()
            ),
            format!(
                "{}: key `ingest_timeout_s`: asks for 30.5, but the policy {} allows at most 30: change the batch, or ask the operator to change the policy",
                f.shown("slow.yaml"),
                policy_path.display()
            ),
        ]
    );
    let names: Vec<&str> = folder
        .batches
        .iter()
        .map(|b| b.metric_batch.as_str())
        .collect();
    assert_eq!(names, vec!["small"]);
    assert_eq!(
        folder.batches[0].limits.memory_mb, 512,
        "an unset limit is lowered to the ceiling"
    );
}

#[test]
fn host_variables_are_refused_unless_the_policy_lists_them() {
    let f = Folder::with_defaults();
    // A grant by batch name needs the name bound to a folder, so no file
    // elsewhere can claim it.
    let p = policy(
        "ingest_env_allowed: [WEATHER_REGION, \"POSTHOG_*\"]\ningest_env_allowed_by_batch:\n  special: [SPECIAL_SETTING]\n\
         folders:\n  ok: {batches: [ok]}\n  other: {batches: [other]}\n  special: {batches: [special]}\n  thief: {batches: [thief]}\n",
    );
    f.write(
        "thief/thief.yaml",
        &format!("metric_batch: \"thief\"\n{SQL}ingest_env: [WEATHER_REGION, ANOMSTACK_ALERT_EMAIL_PASSWORD]\n"),
    );
    f.write(
        "ok/ok.yaml",
        &format!("metric_batch: \"ok\"\n{SQL}ingest_env: [WEATHER_REGION, POSTHOG_PROJECT]\n"),
    );
    f.write(
        "special/special.yaml",
        &format!("metric_batch: \"special\"\n{SQL}ingest_env: [SPECIAL_SETTING]\n"),
    );
    f.write(
        "other/other.yaml",
        &format!("metric_batch: \"other\"\n{SQL}ingest_env: [SPECIAL_SETTING]\n"),
    );
    let folder = load(&f, &p.policy);
    let e = errors(&folder);
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(e[0].starts_with(&format!(
        "{}: key `ingest_env`: asks for host variable SPECIAL_SETTING, but the policy",
        f.shown("other/other.yaml")
    )));
    assert!(e[1].starts_with(&format!(
        "{}: key `ingest_env`: asks for host variable ANOMSTACK_ALERT_EMAIL_PASSWORD, but the policy",
        f.shown("thief/thief.yaml")
    )));
    assert!(
        e[1].contains("allows WEATHER_REGION, POSTHOG_*: change the batch"),
        "{}",
        e[1]
    );
    let names: Vec<&str> = folder
        .batches
        .iter()
        .map(|b| b.metric_batch.as_str())
        .collect();
    assert_eq!(names, vec!["ok", "special"]);
}

#[test]
fn an_allowed_host_variable_still_reaches_the_code() {
    let f = Folder::with_defaults();
    let p = policy("ingest_env_allowed: [\"WEATHER_*\"]\n");
    f.write(
        "w/w.py",
        "import os\nimport pandas as pd\n\ndef ingest():\n    return pd.DataFrame({'metric_name': [os.environ['WEATHER_REGION']], 'metric_value': [1.0], 'metric_timestamp': [pd.Timestamp.now(tz='UTC')]})\n",
    );
    f.write(
        "w/w.yaml",
        "metric_batch: \"w\"\ningest_fn: >\n  {% include \"./w/w.py\" %}\ningest_env: [WEATHER_REGION]\n",
    );
    let folder = load(&f, &p.policy);
    assert!(folder.errors.is_empty(), "{:?}", folder.errors);
    let mut store = Store::in_memory().expect("store");
    let r = run_ingest(
        &folder.batches[0],
        &mut store,
        &[("WEATHER_REGION", "eu-west")],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let names = r
        .rows
        .column_by_name("metric_name")
        .expect("names")
        .as_any()
        .downcast_ref::<arrow::array::StringArray>()
        .expect("text")
        .value(0)
        .to_string();
    assert_eq!(names, "eu-west");
}

#[test]
fn private_addresses_rewrites_and_hosts_need_the_policy() {
    let f = Folder::with_defaults();
    let p = policy("allow_http_private: false\nallow_http_rewrite: false\nhttp_allow_hosts: [\"*.example.com\"]\n",
    );
    f.write(
        "private.yaml",
        &format!("metric_batch: \"private\"\n{SQL}http_allow_private: true\n"),
    );
    f.write(
        "rewrite.yaml",
        &format!("metric_batch: \"rewrite\"\n{SQL}http_rewrite: {{\"https://api.example.com\": \"http://169.254.169.254\"}}\n"),
    );
    f.write(
        "wide.yaml",
        &format!(
            "metric_batch: \"wide\"\n{SQL}http_allow_hosts: [\"api.example.com\", \"evil.net\"]\n"
        ),
    );
    f.write("plain.yaml", &format!("metric_batch: \"plain\"\n{SQL}"));
    let folder = load(&f, &p.policy);
    let e = errors(&folder);
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(
        e[0].contains("key `http_allow_private`: asks for true, but the policy"),
        "{}",
        e[0]
    );
    assert!(
        e[1].contains("key `http_rewrite`: sets rewrites, but the policy"),
        "{}",
        e[1]
    );
    assert!(
        e[2].contains("key `http_allow_hosts`: asks for host evil.net, but the policy"),
        "{}",
        e[2]
    );
    assert_eq!(folder.batches.len(), 1);
    assert_eq!(
        folder.batches[0].http.allow_hosts,
        vec!["*.example.com".to_string()],
        "a batch without its own list gets the policy's"
    );
}

#[test]
fn templates_can_be_pinned_to_the_shipped_ones() {
    let f = Folder::with_defaults();
    let p = policy("allow_template_overrides: false\n");
    f.write(
        "own.yaml",
        &format!("metric_batch: \"own\"\n{SQL}train_sql: \"SELECT * FROM metrics\"\n"),
    );
    f.write("shipped.yaml", &format!("metric_batch: \"shipped\"\n{SQL}"));
    let folder = load(&f, &p.policy);
    let e = errors(&folder);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with(&format!(
            "{}: key `train_sql`: replaces the shipped template, but the policy",
            f.shown("own.yaml")
        )),
        "{}",
        e[0]
    );
    assert_eq!(folder.batches.len(), 1);
    // Editing the shipped file the defaults include counts too.
    f.write("defaults/sql/score.sql", "SELECT * FROM metrics");
    let folder = load(&f, &p.policy);
    assert!(folder.batches.is_empty());
    let shipped_errors: Vec<String> = errors(&folder)
        .into_iter()
        .filter(|e| !e.contains("key `train_sql`"))
        .collect();
    assert_eq!(
        shipped_errors.len(),
        1,
        "one error, in the defaults, naming both batches: {shipped_errors:?}"
    );
    assert!(shipped_errors[0].contains("key `score_sql`"));
    assert!(
        shipped_errors[0].ends_with("(stops 2 batches: `own`, `shipped`: fix it once there)"),
        "{}",
        shipped_errors[0]
    );
}

#[test]
fn a_policy_file_with_a_mistake_is_refused_whole() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("p.yaml");
    std::fs::write(&path, "max:\n  ingest_memory_gb: 1\n").expect("write");
    let e = Policy::load(&path).unwrap_err();
    assert!(
        e.contains(
            "`ingest_memory_gb` is not a limit a policy can cap (did you mean `ingest_memory_mb`?)"
        ),
        "{e}"
    );
    std::fs::write(&path, "allow_everything: true\n").expect("write");
    let e = Policy::load(&path).unwrap_err();
    assert!(e.contains("unknown field `allow_everything`"), "{e}");
    std::fs::write(&path, "max:\n  ingest_fuel: -1\n").expect("write");
    assert!(Policy::load(&path)
        .unwrap_err()
        .contains("must be a number above 0"));
}

#[test]
fn validate_lists_the_refusals_and_exits_1() {
    let f = Folder::with_defaults();
    let p = policy("max:\n  ingest_memory_mb: 512\n");
    f.write(
        "big.yaml",
        &format!("metric_batch: \"big\"\n{SQL}ingest_memory_mb: 4096\n"),
    );
    let (code, text) =
        crate::support::validate(f.path(), &["--policy".as_ref(), p.path.as_os_str()]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("key `ingest_memory_mb`: asks for 4096, but the policy"),
        "{text}"
    );
    let missing = std::process::Command::new(env!("CARGO_BIN_EXE_sandstack"))
        .args(["validate", "--metrics"])
        .arg(f.path())
        .env("SANDSTACK_POLICY", f.path().join("no-such-policy.yaml"))
        .output()
        .expect("run");
    assert_ne!(
        missing.status.code(),
        Some(0),
        "a missing policy is not ignored"
    );
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read"));
}

#[test]
fn the_shipped_folder_loads_under_the_strict_example_policy() {
    let repo = crate::support::repo();
    let p = Policy::load(&repo.join("policy.strict.yaml")).expect("the example policy reads");
    let folder = config::load_with_policy(&repo.join("metrics"), &Default::default(), &p);
    assert!(folder.errors.is_empty(), "{:?}", folder.errors);
    assert_eq!(folder.batches.len(), 3);
    assert!(folder.batches.iter().all(|b| b.limits.memory_mb == 512));
}

#[test]
fn a_batch_includes_only_its_own_files_and_the_defaults_with_or_without_a_policy() {
    let f = Folder::with_defaults();
    f.write("other/secret.sql", "SELECT 'the other batch''s SQL'");
    f.write(
        "other/other.yaml",
        &format!("metric_batch: \"other\"\n{SQL}"),
    );
    f.write(
        "mine/own.sql",
        "SELECT now() AS metric_timestamp, 'm' AS metric_name, 1 AS metric_value",
    );
    f.write(
        "mine/ok.yaml",
        "metric_batch: \"ok\"\ningest_sql: >\n  {% include \"./mine/own.sql\" %}\n",
    );
    f.write(
        "mine/nosy.yaml",
        "metric_batch: \"nosy\"\ningest_sql: >\n  {% include \"./other/secret.sql\" %}\n",
    );
    let p = policy("allow_template_overrides: true\n");
    for policy in [Policy::none(), p.policy.clone()] {
        let folder = load(&f, &policy);
        let e = errors(&folder);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].contains("include \"./other/secret.sql\" is outside this batch's files: a batch may include only from its own folder (mine/) and defaults/"),
            "{}",
            e[0]
        );
        let names: Vec<&str> = folder
            .batches
            .iter()
            .map(|b| b.metric_batch.as_str())
            .collect();
        assert_eq!(names, vec!["ok", "other"]);
    }
}

#[test]
fn the_policy_shape_from_the_issue_works_as_written() {
    let p = policy(
        "max:                       # ceilings, by the batch key they cap\n  ingest_timeout_s: 30\n  ingest_memory_mb: 512\n  job_timeout_s: 300\ningest_env_allowed: [WEATHER_API_KEY, \"POSTHOG_*\"]   # what batches may list in ingest_env\nallow_http_private: false  # may batches set http_allow_private?\nallow_http_rewrite: false  # may batches set http_rewrite?\nallow_template_overrides: true\n",
    );
    let folder = config::load_with_policy(
        &crate::support::repo().join("metrics"),
        &Default::default(),
        &p.policy,
    );
    assert!(folder.errors.is_empty(), "{:?}", folder.errors);
    assert!(folder
        .batches
        .iter()
        .all(|b| b.limits.memory_mb == 512 && b.jobs.timeout_s == 300.0));
}

#[test]
fn what_an_llmalert_run_may_spend_is_capped_by_the_operator() {
    let f = Folder::with_defaults();
    let p = policy("max:\n  llmalert_max_calls: 10\n  llmalert_max_tokens: 50000\n");
    f.write(
        "greedy.yaml",
        &format!("metric_batch: \"greedy\"\n{SQL}disable_llmalert: false\nllmalert_max_tokens: 100000000\nllmalert_max_calls: 11\n"),
    );
    f.write(
        "modest.yaml",
        &format!("metric_batch: \"modest\"\n{SQL}disable_llmalert: false\n"),
    );
    let folder = load(&f, &p.policy);
    let refused = errors(&folder);
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(
        refused[0].contains("key `llmalert_max_calls`: asks for 11"),
        "{refused:?}"
    );
    assert!(
        refused[1].contains("key `llmalert_max_tokens`: asks for 100000000")
            && refused[1].contains("at most 50000"),
        "{refused:?}"
    );
    let modest = folder.batch("modest").expect("loads");
    let l = &modest.llmalert;
    assert_eq!(
        (l.max_calls, l.max_tokens),
        (10, 50000),
        "unset limits take the ceilings"
    );
}

#[test]
fn rewrite_targets_host_patterns_and_name_length_are_the_operators() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("p.yaml");
    let load_policy = |yaml: &str| {
        std::fs::write(&path, yaml).expect("write");
        Policy::load(&path)
    };
    let e = load_policy("http_allow_hosts: [\"evil.net/.example.com\"]\n").unwrap_err();
    assert!(
        e.contains("http_allow_hosts: `evil.net/.example.com` is not a host pattern"),
        "{e}"
    );
    let e = load_policy(
        "allow_http_rewrite: true\nhttp_rewrite_targets: [\"http://u@127.0.0.1:1/\"]\n",
    )
    .unwrap_err();
    assert!(e.contains("it holds user information"), "{e}");

    let p = policy(
        "allow_http_rewrite: true\nhttp_rewrite_targets: [\"http://127.0.0.1:8080\"]\nmax:\n  ingest_max_name_len: 20\n",
    );
    let f = Folder::with_defaults();
    f.write(
        "ok/ok.yaml",
        &format!("metric_batch: ok\n{SQL}http_rewrite: {{\"https://a.test\": \"http://127.0.0.1:8080/mirror\"}}\n"),
    );
    f.write(
        "port/port.yaml",
        &format!("metric_batch: port\n{SQL}http_rewrite: {{\"https://a.test\": \"http://127.0.0.1:9090/\"}}\n"),
    );
    f.write(
        "long/long.yaml",
        &format!("metric_batch: long\n{SQL}ingest_max_name_len: 200\n"),
    );
    let folder = load(&f, &p.policy);
    let e = errors(&folder);
    assert_eq!(e.len(), 2, "{e:#?}");
    assert!(
        e[0].contains("long.yaml: key `ingest_max_name_len`: asks for 200"),
        "{}",
        e[0]
    );
    assert!(
        e[1].contains("port.yaml: key `http_rewrite`: rewrites to http://127.0.0.1:9090/"),
        "{}",
        e[1]
    );
    let ok = folder.batch("ok").expect("ok");
    assert_eq!(ok.limits.max_name_len, 20, "lowered to the ceiling");
}

/// A spec made again after load (a backfill's wider window) is held to the
/// same policy: the one constructor applies it.
#[test]
fn every_spec_made_after_load_is_held_to_the_policy() {
    let p = policy(
        "max:\n  job_timeout_s: 2\n  ingest_max_rows: 10\nhttp_allow_hosts: [\"*.example.com\"]\n",
    );
    let f = Folder::with_defaults();
    f.write("b/b.yaml", &format!("metric_batch: b\n{SQL}"));
    let folder = load(&f, &p.policy);
    let spec = folder.batch("b").expect("b");
    let wider = sandstack::pipeline::backfill::scoring_spec(spec, 500).expect("re-rendered");
    assert_eq!(wider.score.max_n, 500, "the wider window");
    for s in [spec, &wider] {
        assert_eq!(s.jobs.timeout_s, 2.0);
        assert_eq!(s.limits.max_rows, 10);
        assert_eq!(s.http.allow_hosts, vec!["*.example.com".to_string()]);
    }
}

/// `sandstack backfill` runs its jobs within the policy's job_timeout_s: a
/// train_sql that would run for minutes is stopped at 2 s.
#[test]
fn backfill_runs_its_jobs_within_the_policys_time_limit() {
    let p = policy("max:\n  job_timeout_s: 2\n");
    let f = Folder::with_defaults();
    f.write(
        "slow/slow.yaml",
        &format!(
            "metric_batch: slow\n{SQL}train_sql: \"SELECT now() AS metric_timestamp, 'm' AS metric_name, \
             count(*)::DOUBLE AS metric_value FROM range(1000000000000)\"\n"
        ),
    );
    let db = tempfile::tempdir().expect("tmp");
    let t = std::time::Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sandstack"))
        .args([
            "backfill",
            "slow",
            "--periods",
            "3",
            "--every",
            "10m",
            "--metrics",
        ])
        .arg(f.path())
        .arg("--db")
        .arg(db.path().join("m.duckdb"))
        .arg("--policy")
        .arg(&p.path)
        .output()
        .expect("backfill");
    let took = t.elapsed();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("job_timeout_s"), "{text}");
    assert!(
        took < std::time::Duration::from_secs(30),
        "{took:?}: {text}"
    );
}

/// On a PostgreSQL store, the policy's ceilings hold as on DuckDB.
#[test]
fn on_postgresql_the_policys_ceilings_hold() {
    let c = sandstack::store::pg::cluster::TempCluster::start()
        .expect("a PostgreSQL cluster (scripts/install-deps)");
    let p = policy("max:\n  ingest_max_rows: 10\n");
    let f = Folder::with_defaults();
    f.write(
        "many/many.yaml",
        "metric_batch: many\ningest_sql: \"SELECT now() AS metric_timestamp, 'm' || i AS metric_name, i AS metric_value FROM range(100) t(i)\"\n",
    );
    let folder = load(&f, &p.policy);
    let spec = folder.batch("many").expect("many");
    let mut store = Store::from_backend(Box::new(
        sandstack::store::pg::PgStore::open(&c.url).expect("open"),
    ));
    let e = run_ingest(spec, &mut store, &[])
        .expect_err("100 rows over a ceiling of 10")
        .to_string();
    assert!(e.contains("more than 10 rows (ingest_max_rows)"), "{e}");
    assert_eq!(store.count_rows(&key("metrics")).expect("count"), 0);
}

#[test]
fn a_policy_names_the_warehouses_batches_may_read_and_refuses_the_rest() {
    let f = Folder::with_defaults();
    f.write("pg.yaml", &format!("metric_batch: pg\ndb: postgres\n{SQL}"))
        .write("bq.yaml", &format!("metric_batch: bq\ndb: bigquery\n{SQL}"))
        .write("own.yaml", &format!("metric_batch: own\n{SQL}"));
    // Without a policy: each warehouse batch is named in a warning.
    let folder = load(&f, &Policy::none());
    assert!(folder.errors.is_empty(), "{:?}", folder.errors);
    let warned: Vec<&String> = folder
        .warnings
        .iter()
        .filter(|w| w.contains("with the operator's credentials"))
        .collect();
    assert_eq!(warned.len(), 2, "{:?}", folder.warnings);
    // A policy that allows only BigQuery refuses the PostgreSQL batch,
    // and one that names none refuses both.
    let p = policy("warehouses: [bigquery]\n");
    let folder = load(&f, &p.policy);
    let errors = errors(&folder);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("pg.yaml")
            && errors[0].contains("asks for postgres")
            && errors[0].contains("duckdb, bigquery (the policy's `warehouses`)"),
        "{errors:?}"
    );
    assert!(folder.batch("bq").is_some() && folder.batch("own").is_some());
    let p = policy("max: {ingest_timeout_s: 10}\n");
    assert_eq!(errors_of(&f, &p.policy), 2);
    let e = Policy::load(&policy_path("warehouses: [oracle]\n")).expect_err("unknown");
    assert!(e.contains("unknown db `oracle`"), "{e}");
}

fn errors_of(f: &Folder, p: &Policy) -> usize {
    load(f, p).errors.len()
}

fn policy_path(yaml: &str) -> std::path::PathBuf {
    let dir = tempfile::tempdir().expect("tmp").keep();
    let path = dir.join("policy.yaml");
    std::fs::write(&path, yaml).expect("write");
    path
}
