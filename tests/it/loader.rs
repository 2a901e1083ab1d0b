//! The loader against a hostile metrics folder (issue 29): a batch's name
//! is the operator's to bind, its includes stay in its own folder, the
//! environment reaches only the batch it names, and no YAML or template
//! can make loading slow or large, in `validate` or in a running daemon.

use std::process::Command;
use std::time::Duration;

use sandstack::config::{self, Policy};

use crate::support::{run_measured, Folder};

const SQL: &str =
    "ingest_sql: \"SELECT now() AS metric_timestamp, 'm' AS metric_name, 1 AS metric_value\"\n";

fn policy_file(dir: &tempfile::TempDir, yaml: &str) -> Result<Policy, String> {
    let path = dir.path().join("policy.yaml");
    std::fs::write(&path, yaml).expect("write");
    Policy::load(&path)
}

fn errors(f: &Folder, p: &Policy) -> Vec<String> {
    config::load_with_policy(f.path(), &Default::default(), p)
        .errors
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn a_name_claimed_twice_refuses_both_files_in_one_error() {
    let f = Folder::with_defaults();
    f.write(
        "a_impostor/w.yaml",
        &format!("metric_batch: weather\n{SQL}"),
    );
    f.write(
        "weather/weather.yaml",
        &format!("metric_batch: weather\n{SQL}"),
    );
    f.write("other/other.yaml", &format!("metric_batch: other\n{SQL}"));
    let folder = config::load(f.path(), &Default::default());
    let errs: Vec<String> = folder.errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        errs,
        vec![format!(
            "metric_batch `weather` is claimed by both {} and {}: a batch name belongs to one file, so none \
             of them loads; rename all but one",
            f.shown("a_impostor/w.yaml"),
            f.shown("weather/weather.yaml")
        )]
    );
    let names: Vec<&str> = folder
        .batches
        .iter()
        .map(|b| b.metric_batch.as_str())
        .collect();
    assert_eq!(names, vec!["other"]);
}

#[test]
fn the_operator_binds_names_and_their_secrets_to_folders() {
    let dir = tempfile::tempdir().expect("tmp");
    // A secret granted by name alone could go to any file claiming it.
    let e = policy_file(
        &dir,
        "ingest_env_allowed_by_batch: {weather: [WEATHER_REGION]}\n",
    )
    .expect_err("unbound grant");
    assert!(
        e.contains("no entry of `folders` binds the name `weather`"),
        "{e}"
    );
    let p = policy_file(
        &dir,
        "folders:\n  teams/weather: {batches: [weather, \"weather_*\"], ingest_env_allowed: [WEATHER_REGION]}\n  teams/other: {batches: [other]}\n",
    )
    .expect("policy");
    let f = Folder::with_defaults();
    let env = "ingest_env: [WEATHER_REGION]\n";
    f.write(
        "teams/weather/weather.yaml",
        &format!("metric_batch: weather\n{SQL}{env}"),
    );
    f.write(
        "teams/weather/sub/f.yaml",
        &format!("metric_batch: weather_forecast\n{SQL}"),
    );
    f.write(
        "teams/other/o.yaml",
        &format!("metric_batch: other\n{SQL}{env}"),
    );
    f.write(
        "teams/other/w.yaml",
        &format!("metric_batch: weather_2\n{SQL}"),
    );
    f.write("stray/s.yaml", &format!("metric_batch: stray\n{SQL}"));
    let folder = config::load_with_policy(f.path(), &Default::default(), &p);
    let mut names: Vec<&str> = folder
        .batches
        .iter()
        .map(|b| b.metric_batch.as_str())
        .collect();
    names.sort();
    assert_eq!(names, vec!["weather", "weather_forecast"]);
    let errs: Vec<String> = folder.errors.iter().map(ToString::to_string).collect();
    assert_eq!(errs.len(), 3, "{errs:#?}");
    assert!(errs
        .iter()
        .any(|e| e.contains("o.yaml: key `ingest_env`: asks for host variable WEATHER_REGION")));
    assert!(errs.iter().any(|e| e
        .contains("w.yaml: key `metric_batch`: claims the batch name `weather_2`")
        && e.contains("files in teams/other/ only the names other")));
    assert!(errs
        .iter()
        .any(|e| e
            .contains("s.yaml: key `metric_batch`: is a batch file outside the policy's folders")));
}

#[test]
fn includes_stay_in_the_batchs_own_folder_and_defaults() {
    let f = Folder::with_defaults();
    f.write("victim/secret.py", "KEY = 'the victim team code'\n");
    f.write("victim/v.yaml", &format!("metric_batch: victim\n{SQL}"));
    // At the top of the folder: no folder of its own.
    f.write(
        "top.yaml",
        "metric_batch: top\ningest_sql: \"SELECT '{% include \\\"victim/secret.py\\\" %}' AS x\"\n",
    );
    // In a folder holding another batch's folder.
    f.write(
        "team/inner/inner.yaml",
        &format!("metric_batch: inner\n{SQL}"),
    );
    f.write("team/inner/code.sql", "SELECT 1");
    f.write(
        "team/outer.yaml",
        "metric_batch: outer\ningest_sql: \"{% include \\\"team/inner/code.sql\\\" %}\"\n",
    );
    let errs = errors(&f, &Policy::none());
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert!(errs.iter().any(|e| e.contains("top.yaml: key `ingest_sql`: include \"victim/secret.py\" is outside this batch's files: a batch file at the top of the metrics folder has no folder of its own")), "{errs:#?}");
    assert!(errs.iter().any(|e| e.contains("outer.yaml: key `ingest_sql`: include \"team/inner/code.sql\" is outside this batch's files: a batch may include only from its own folder (team/)")), "{errs:#?}");
}

/// `sandstack validate` on `f`: its output, peak memory (KiB) and time.
fn validate(f: &Folder) -> (String, i32, u64, Duration) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sandstack"));
    cmd.args(["validate", "--metrics"]).arg(f.path());
    let (out, rss_kb, took) = run_measured(&mut cmd);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (text, out.status.code().unwrap_or(-1), rss_kb, took)
}

/// Memory `validate` may use on a hostile folder: its own and its
/// template helper's, each well below what the bombs would take.
const VALIDATE_RSS_KB: u64 = 700 << 10;

#[test]
fn template_bombs_end_their_render_with_the_file_and_key_in_bounded_memory() {
    let f = Folder::with_defaults();
    let bombs = [
        ("join", "{{ range(100000) | join(range(100000) | join(\\\",\\\")) }}"),
        ("indent", "{{ ('line\\\\n' * 100000) | indent(50000) }}"),
        ("double", "{% set s = namespace(v='x' * 50000000) %}{% for i in range(30) %}{% set s.v = s.v ~ s.v %}{% endfor %}{{ s.v | length }}"),
        ("replace", "{{ ('x' * 100000) | replace('x', 'y' * 100000) }}"),
    ];
    for (name, t) in bombs {
        f.write(
            &format!("{name}/{name}.yaml"),
            &format!("metric_batch: {name}\ningest_sql: \"{t}\"\n"),
        );
    }
    f.write("ok/ok.yaml", &format!("metric_batch: ok\n{SQL}"));
    let (text, code, rss_kb, took) = validate(&f);
    assert_eq!(code, 1, "{text}");
    for (name, _) in bombs {
        let file = f.shown(&format!("{name}/{name}.yaml"));
        assert!(
            text.lines().any(|l| l.contains(&file)
                && l.contains("key `ingest_sql`")
                && (l.contains("MiB of memory") || l.contains("renders to more than"))),
            "{name}: {text}"
        );
    }
    assert!(text.contains("ok"), "{text}");
    assert!(rss_kb < VALIDATE_RSS_KB, "{rss_kb} KiB");
    assert!(took < Duration::from_secs(60), "{took:?}");
}

#[test]
fn yaml_of_aliased_empty_lists_is_refused_before_it_expands() {
    let f = Folder::with_defaults();
    // 6000 aliases of a list of 3000 empty lists: 18 million values.
    let mut text = format!(
        "metric_batch: aliases\na: &a [{}]\n",
        vec!["[]"; 3000].join(", ")
    );
    text.push_str(&format!("b: [{}]\n", vec!["*a"; 6000].join(", ")));
    assert!(text.len() < 128 << 10);
    f.write("aliases/aliases.yaml", &text);
    let (out, code, rss_kb, took) = validate(&f);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "{}: invalid YAML: it expands to more than 32 MiB parsed",
            f.shown("aliases/aliases.yaml")
        )),
        "{out}"
    );
    // Memory is the proof it never expanded; time, only that it ended
    // (its parse's deadline is 2 s).
    assert!(rss_kb < VALIDATE_RSS_KB, "{rss_kb} KiB");
    assert!(
        took < Duration::from_secs(2) + crate::support::STOP_SLACK,
        "{took:?}"
    );
}

#[test]
fn a_folder_renders_to_a_bounded_total() {
    let f = Folder::with_defaults();
    for i in 0..20 {
        f.write(
            &format!("b{i}/b{i}.yaml"),
            &format!(
                "metric_batch: b{i}\n{SQL}train_sql: \"{{{{ 'x' * 4000000 }}}}\"\nscore_sql: \"{{{{ 'y' * 4000000 }}}}\"\n"
            ),
        );
    }
    let (out, code, rss_kb, _) = validate(&f);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "the templates of the metrics folder render to more than 64 MiB in all, so no more of its \
             batches are rendered; most was spent by b"
        ),
        "{out}"
    );
    assert!(rss_kb < VALIDATE_RSS_KB, "{rss_kb} KiB");
}

#[test]
fn a_template_bomb_dropped_into_a_running_daemons_folder_is_refused_and_it_runs_on() {
    let f = Folder::with_defaults();
    f.write("ok/ok.yaml", &format!("metric_batch: ok\n{SQL}"));
    let db = tempfile::tempdir().expect("tmp");
    // Its dashboard's address is printed once the folder is loaded.
    let (mut run, _) = crate::support::start_sandstack(f.path(), &db.path().join("m.duckdb"));
    f.write(
        "bomb/bomb.yaml",
        "metric_batch: bomb\ningest_sql: \"{{ range(100000) | join(range(100000) | join(\\\",\\\")) }}\"\n",
    );
    // The reload comes a quiet second after the change, and renders (and
    // refuses) the bomb.
    let bomb = format!("{}: key `ingest_sql`", f.shown("bomb/bomb.yaml"));
    let err = run.wait_for_stderr("refusing the bomb", |l| {
        l.contains(&bomb) && l.contains("MiB of memory")
    });
    assert!(
        run.try_wait().expect("status").is_none(),
        "the daemon is still running: {err}"
    );
    crate::support::terminate(&run);
    let out = run.wait_with_output();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}: {err}", out.status);
}

/// The loader reads only the folder's own files: a defaults file or a
/// defaults folder that is a link to a host file or folder is refused, not
/// read (its keys would be template variables, and so a batch's to store).
#[test]
fn a_linked_host_file_is_never_read_as_the_folders_yaml() {
    let host = tempfile::tempdir().expect("tmp");
    std::fs::write(
        host.path().join("secret.yaml"),
        "api_token: the operator's secret\n",
    )
    .expect("write");
    let f = Folder::empty();
    f.write("b/b.yaml", &format!("metric_batch: b\n{SQL}"));
    std::fs::create_dir_all(f.path().join("defaults")).expect("mkdir");
    std::os::unix::fs::symlink(
        host.path().join("secret.yaml"),
        f.path().join("defaults/defaults.yaml"),
    )
    .expect("link");
    let folder = config::load(f.path(), &Default::default());
    let errs: Vec<String> = folder.errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        errs,
        vec![format!(
            "{}: cannot read: it resolves outside the metrics folder (through a symlink): sandstack reads only \
             the folder's own files",
            f.shown("defaults/defaults.yaml")
        )]
    );
    // A whole defaults folder linked elsewhere, the same.
    std::fs::remove_dir_all(f.path().join("defaults")).expect("rm");
    std::fs::rename(
        host.path().join("secret.yaml"),
        host.path().join("defaults.yaml"),
    )
    .expect("mv");
    std::os::unix::fs::symlink(host.path(), f.path().join("defaults")).expect("link");
    let errs: Vec<String> = config::load(f.path(), &Default::default())
        .errors
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(
        errs.len() == 1 && errs[0].contains("resolves outside the metrics folder"),
        "{errs:?}"
    );
}

/// Where a batch's models go is a folder below the working directory and
/// outside the metrics folder (whose links are the batch author's): not
/// an absolute path, not `..`, not the metrics folder or a folder holding
/// it. The operator may name any folder.
#[test]
fn a_batchs_model_path_stays_below_the_working_directory_and_outside_the_folder() {
    let work = tempfile::tempdir().expect("tmp");
    let m = work.path().join("m");
    std::fs::create_dir_all(&m).expect("mkdir");
    let f = Folder::with_defaults();
    // The folder's defaults, copied into m/ below the working directory.
    let copy = |from: &std::path::Path, to: &std::path::Path| {
        std::process::Command::new("cp")
            .arg("-r")
            .arg(from)
            .arg(to)
            .status()
            .expect("cp")
    };
    copy(&f.path().join("defaults"), &m);
    for (name, path) in [
        ("abs", "local:///tmp/sandstack-models"),
        ("up", "local://../models"),
        ("inside", "local://./m/evil/trap"),
        ("holds", "local://."),
        ("ok", "local://./models"),
    ] {
        std::fs::create_dir_all(m.join(name)).expect("mkdir");
        std::fs::write(
            m.join(name).join(format!("{name}.yaml")),
            format!("metric_batch: {name}\n{SQL}model_path: \"{path}\"\n"),
        )
        .expect("write");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_sandstack"))
        .args(["validate", "--metrics", "m"])
        .current_dir(work.path())
        .output()
        .expect("validate");
    let text = String::from_utf8_lossy(&out.stderr);
    for (name, why) in [
        ("abs", "is an absolute path"),
        ("up", "climbs out with `..`"),
        ("inside", "lies inside the metrics folder, or holds it"),
        ("holds", "lies inside the metrics folder, or holds it"),
    ] {
        assert!(
            text.lines().any(
                |l| l.contains(&format!("m/{name}/{name}.yaml: key `model_path`"))
                    && l.contains(why)
            ),
            "{name}: {text}"
        );
    }
    assert!(!text.contains("m/ok/ok.yaml"), "{text}");
    // The operator's choice, from the environment, may be anywhere.
    let out = Command::new(env!("CARGO_BIN_EXE_sandstack"))
        .args(["validate", "--metrics", "m"])
        .env("ANOMSTACK_MODEL_PATH", "local:///var/lib/sandstack/models")
        .current_dir(work.path())
        .output()
        .expect("validate");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!text.contains("model_path"), "{text}");
}

/// The policy's binding comes first: a file elsewhere claiming a bound
/// name is refused alone (the bound batch loads), and a name granted
/// variables must be bound to exactly one folder.
#[test]
fn a_foreign_claim_on_a_bound_name_is_refused_alone_and_grants_bind_one_folder() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = policy_file(
        &dir,
        "folders:\n  victim: {batches: [victim]}\n  evil: {batches: [evil]}\n",
    )
    .expect("policy");
    let f = Folder::with_defaults();
    f.write("evil/claim.yaml", &format!("metric_batch: victim\n{SQL}"));
    f.write(
        "victim/victim.yaml",
        &format!("metric_batch: victim\n{SQL}"),
    );
    let folder = config::load_with_policy(f.path(), &Default::default(), &p);
    let names: Vec<&str> = folder
        .batches
        .iter()
        .map(|b| b.metric_batch.as_str())
        .collect();
    assert_eq!(names, vec!["victim"]);
    let errs: Vec<String> = folder.errors.iter().map(ToString::to_string).collect();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].contains("evil/claim.yaml: key `metric_batch`: claims the batch name `victim`"));

    let e = policy_file(
        &dir,
        "folders:\n  victim: {batches: [victim]}\n  evil: {batches: [\"v*\"]}\ningest_env_allowed_by_batch: {victim: [X_SECRET]}\n",
    )
    .expect_err("bound twice");
    assert!(e.contains("the name is bound to evil/ and victim/"), "{e}");
}

/// A tenant that spends its rendering budget stops only its own batches:
/// with the policy's folders, each folder has a budget of its own, and the
/// error names who spent it.
#[test]
fn one_tenant_spending_its_render_budget_leaves_the_others_loading() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = policy_file(
        &dir,
        "folders:\n  aaa_greedy: {batches: [\"g*\"]}\n  victim: {batches: [victim]}\n",
    )
    .expect("policy");
    let f = Folder::with_defaults();
    for i in 0..12 {
        f.write(
            &format!("aaa_greedy/g{i}.yaml"),
            &format!(
                "metric_batch: g{i}\n{SQL}train_sql: \"{{{{ 'x' * 4000000 }}}}\"\nscore_sql: \"{{{{ 'y' * 4000000 }}}}\"\n"
            ),
        );
    }
    f.write(
        "victim/victim.yaml",
        &format!("metric_batch: victim\n{SQL}"),
    );
    let folder = config::load_with_policy(f.path(), &Default::default(), &p);
    assert!(folder.batch("victim").is_some(), "{:?}", folder.errors);
    let errs: Vec<String> = folder.errors.iter().map(ToString::to_string).collect();
    assert!(
        errs.iter()
            .any(|e| e.contains("the templates of aaa_greedy/ render to more than 64 MiB in all")),
        "{errs:?}"
    );
}

/// Deeply nested brackets, which keep a YAML parser busy for minutes, are
/// refused at the parse's deadline; and a defaults file copied into every
/// batch counts once per batch.
#[test]
fn yaml_that_parses_slowly_or_multiplies_through_the_defaults_is_refused() {
    let f = Folder::with_defaults();
    let depth = 200_000;
    f.write(
        "deep/deep.yaml",
        &format!(
            "metric_batch: deep\nx: {}{}\n",
            "[".repeat(depth),
            "]".repeat(depth)
        ),
    );
    let (out, code, _, took) = validate(&f);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "{}: invalid YAML: parsing it took longer than 2 s (deep nesting?)",
            f.shown("deep/deep.yaml")
        )),
        "{out}"
    );
    assert!(
        took < Duration::from_secs(2) + crate::support::STOP_SLACK,
        "{took:?}"
    );

    let g = Folder::with_defaults();
    let mut defaults =
        std::fs::read_to_string(g.path().join("defaults/defaults.yaml")).expect("read");
    defaults.push_str(&format!(
        "big: &big [{}]\nbigger: [{}]\n",
        vec!["\"xxxxxxxxxxxxxxxx\""; 1000].join(", "),
        vec!["*big"; 250].join(", ")
    ));
    g.write("defaults/defaults.yaml", &defaults);
    for i in 0..30 {
        g.write(
            &format!("b{i}/b{i}.yaml"),
            &format!("metric_batch: b{i}\n{SQL}"),
        );
    }
    let (out, code, rss_kb, _) = validate(&g);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "not loaded: the folder's batch configurations expand to more than 256 MiB in all"
        ),
        "{out}"
    );
    assert!(rss_kb < VALIDATE_RSS_KB, "{rss_kb} KiB");
}
