//! Settings with a fixed set of values, as enums: a value is matched without
//! regard to case, and anything else is a load error that lists the choices
//! and, when one is close, says which was probably meant.

use std::fmt;

/// The closest of `candidates` to `text`, if it is close enough to be a
/// likely typo (a Damerau-Levenshtein distance of at most 2, or a fifth of
/// the candidate's length for long ones).
pub fn closest<'a>(text: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let text = text.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| {
            (
                strsim::damerau_levenshtein(&text, &c.to_ascii_lowercase()),
                c,
            )
        })
        .filter(|(d, c)| *d <= 2.max(c.len() / 5))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// A value from a fixed set, spelled in YAML as one of [`Choice::NAMES`].
pub trait Choice: Sized + Copy + 'static {
    /// What the value is, for messages ("alert method").
    const WHAT: &'static str;
    /// Every value with its canonical spelling.
    const ALL: &'static [(Self, &'static str)];
    /// Other spellings accepted and not listed.
    const ALIASES: &'static [(Self, &'static str)] = &[];

    fn name(self) -> &'static str
    where
        Self: PartialEq,
    {
        Self::ALL
            .iter()
            .find(|(v, _)| *v == self)
            .map_or("?", |(_, n)| n)
    }

    /// Parse `text`, ignoring case; the error lists the choices and a
    /// did-you-mean.
    fn parse(text: &str) -> Result<Self, String> {
        if let Some((v, _)) = Self::ALL
            .iter()
            .chain(Self::ALIASES)
            .find(|(_, n)| n.eq_ignore_ascii_case(text.trim()))
        {
            return Ok(*v);
        }
        let names: Vec<&str> = Self::ALL.iter().map(|(_, n)| *n).collect();
        let hint = closest(text, names.iter().copied())
            .map(|c| format!(" (did you mean `{c}`?)"))
            .unwrap_or_default();
        Err(format!(
            "unknown {} `{text}`{hint}: use {}",
            Self::WHAT,
            names.join(", ")
        ))
    }
}

/// Serialise a choice as its canonical name and read it back with
/// [`Choice::parse`] (for values inside structured keys such as
/// `model_configs`).
macro_rules! choice_serde {
    ($t:ty) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(Choice::name(*self))
            }
        }

        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                <$t as Choice>::parse(&text).map_err(serde::de::Error::custom)
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(Choice::name(*self))
            }
        }
    };
}

/// A channel named in `alert_methods` / `tholdalert_methods`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AlertMethod {
    Email,
    Slack,
    Webhook,
    /// Always on; naming it is accepted.
    Log,
}

impl Choice for AlertMethod {
    const WHAT: &'static str = "alert method";
    const ALL: &'static [(Self, &'static str)] = &[
        (AlertMethod::Email, "email"),
        (AlertMethod::Slack, "slack"),
        (AlertMethod::Webhook, "webhook"),
        (AlertMethod::Log, "log"),
    ];
}
choice_serde!(AlertMethod);

/// A model in `model_configs[].model_name` (PyOD's class names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    Pca,
    Knn,
    IForest,
    Ecod,
    Copod,
    Hbos,
    Lof,
    Mad,
    Ocsvm,
}

impl ModelKind {
    /// The `model_params` sandstack's model takes, by PyOD's names; any
    /// other is refused at load, so a parameter is never silently ignored.
    /// `models::TrainedModel::fit` reads exactly these.
    pub fn params(self) -> &'static [&'static str] {
        match self {
            ModelKind::Pca => &["n_components", "contamination"],
            ModelKind::Knn | ModelKind::Lof => &["n_neighbors", "contamination"],
            ModelKind::IForest => &["n_estimators", "max_samples", "contamination"],
            ModelKind::Ecod | ModelKind::Copod | ModelKind::Mad => &["contamination"],
            ModelKind::Hbos => &["n_bins", "alpha", "tol", "contamination"],
            ModelKind::Ocsvm => &["nu", "tol", "gamma", "kernel", "contamination"],
        }
    }
}

impl Choice for ModelKind {
    const WHAT: &'static str = "model_name";
    const ALL: &'static [(Self, &'static str)] = &[
        (ModelKind::Pca, "PCA"),
        (ModelKind::Knn, "KNN"),
        (ModelKind::IForest, "IForest"),
        (ModelKind::Ecod, "ECOD"),
        (ModelKind::Copod, "COPOD"),
        (ModelKind::Hbos, "HBOS"),
        (ModelKind::Lof, "LOF"),
        (ModelKind::Mad, "MAD"),
        (ModelKind::Ocsvm, "OCSVM"),
    ];
    const ALIASES: &'static [(Self, &'static str)] = &[(ModelKind::IForest, "IsolationForest")];
}
choice_serde!(ModelKind);

/// `model_combination_method`: how several models' probabilities become
/// one score.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CombinationMethod {
    Mean,
    Min,
    Max,
}

impl Choice for CombinationMethod {
    const WHAT: &'static str = "model_combination_method";
    const ALL: &'static [(Self, &'static str)] = &[
        (CombinationMethod::Mean, "mean"),
        (CombinationMethod::Min, "min"),
        (CombinationMethod::Max, "max"),
    ];
}
choice_serde!(CombinationMethod);

/// `detection_defaults`: which built-in values the detection keys a folder
/// leaves unset take (see [`super::detection_defaults`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DetectionDefaults {
    /// Chosen on the evaluation corpus (README, "Tuning detection").
    Sandstack,
    /// Anomstack's own values: its thresholds, smoothing and snoozes.
    Anomstack,
}

impl Choice for DetectionDefaults {
    const WHAT: &'static str = "detection_defaults";
    const ALL: &'static [(Self, &'static str)] = &[
        (DetectionDefaults::Sandstack, "sandstack"),
        (DetectionDefaults::Anomstack, "anomstack"),
    ];
}
choice_serde!(DetectionDefaults);

/// `db`: where a batch's `ingest_sql` runs. The rows always go to
/// sandstack's own store; only DuckDB reads them back with the folder's SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    /// Over the batch's own rows, in a scratch DuckDB (the default).
    DuckDb,
    /// A SQLite file, or a Turso (libSQL) database over its HTTP API.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
    /// A ClickHouse server's HTTP interface.
    ClickHouse,
    /// BigQuery's REST API (`jobs.query`).
    BigQuery,
    /// Snowflake's SQL API.
    Snowflake,
}

impl Choice for Db {
    const WHAT: &'static str = "db";
    const ALL: &'static [(Self, &'static str)] = &[
        (Db::DuckDb, "duckdb"),
        (Db::Sqlite, "sqlite"),
        (Db::Postgres, "postgres"),
        (Db::ClickHouse, "clickhouse"),
        (Db::BigQuery, "bigquery"),
        (Db::Snowflake, "snowflake"),
    ];
    const ALIASES: &'static [(Self, &'static str)] = &[
        (Db::Sqlite, "turso"),
        (Db::Sqlite, "libsql"),
        (Db::Postgres, "postgresql"),
    ];
}
choice_serde!(Db);

/// `<job>_default_schedule_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScheduleStatus {
    Running,
    Stopped,
}

impl Choice for ScheduleStatus {
    const WHAT: &'static str = "schedule status";
    const ALL: &'static [(Self, &'static str)] = &[
        (ScheduleStatus::Running, "RUNNING"),
        (ScheduleStatus::Stopped, "STOPPED"),
    ];
}
choice_serde!(ScheduleStatus);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_any_case_and_suggests_the_closest() {
        assert_eq!(AlertMethod::parse("Slack"), Ok(AlertMethod::Slack));
        assert_eq!(ModelKind::parse("iforest"), Ok(ModelKind::IForest));
        assert_eq!(ModelKind::parse("IsolationForest"), Ok(ModelKind::IForest));
        assert_eq!(
            ModelKind::parse("AutoEncoder").unwrap_err(),
            "unknown model_name `AutoEncoder`: use PCA, KNN, IForest, ECOD, COPOD, HBOS, LOF, MAD, OCSVM"
        );
        assert_eq!(
            ScheduleStatus::parse("running"),
            Ok(ScheduleStatus::Running)
        );
        assert_eq!(
            AlertMethod::parse("emial").unwrap_err(),
            "unknown alert method `emial` (did you mean `email`?): use email, slack, webhook, log"
        );
        assert_eq!(
            ModelKind::parse("IForrest").unwrap_err(),
            "unknown model_name `IForrest` (did you mean `IForest`?): use PCA, KNN, IForest, ECOD, COPOD, HBOS, LOF, MAD, OCSVM"
        );
        assert_eq!(
            CombinationMethod::parse("average").unwrap_err(),
            "unknown model_combination_method `average`: use mean, min, max"
        );
    }

    #[test]
    fn round_trips_through_serde() {
        let m: ModelKind = serde_json::from_str("\"knn\"").expect("parse");
        assert_eq!(serde_json::to_string(&m).expect("json"), "\"KNN\"");
        let bad = serde_json::from_str::<ModelKind>("\"AutoEncoder\"").unwrap_err();
        assert!(
            bad.to_string().contains("use PCA, KNN, IForest, ECOD"),
            "{bad}"
        );
    }

    #[test]
    fn closest_ignores_far_names() {
        assert_eq!(closest("smtp", ["email", "slack"]), None);
        assert_eq!(closest("SLAK", ["email", "slack"]), Some("slack"));
    }
}
