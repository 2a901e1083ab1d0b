//! Where the data lives, read once from `--db` (or `SANDSTACK_DB`,
//! `ANOMSTACK_DUCKDB_PATH`): a DuckDB file one process holds, or a
//! PostgreSQL database a fleet of workers shares.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbTarget {
    /// A DuckDB file (created if missing).
    File(PathBuf),
    /// A `postgres://` (or `postgresql://`) URL.
    Postgres(String),
}

impl DbTarget {
    /// `db` read as what it names.
    pub fn from_path(db: &Path) -> DbTarget {
        match db.to_str().filter(|d| super::pg::is_url(d)) {
            Some(url) => DbTarget::Postgres(url.to_string()),
            None => DbTarget::File(db.to_path_buf()),
        }
    }

    /// Whether every worker and command given it shares it (a server),
    /// rather than one process holding a file.
    pub fn is_shared(&self) -> bool {
        matches!(self, DbTarget::Postgres(_))
    }

    /// How it is named in messages: a file's path, or the URL without its
    /// password.
    pub fn label(&self) -> String {
        match self {
            DbTarget::File(path) => path.display().to_string(),
            DbTarget::Postgres(url) => super::pg::redacted(url),
        }
    }
}

impl From<PathBuf> for DbTarget {
    fn from(db: PathBuf) -> Self {
        DbTarget::from_path(&db)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_a_shared_server_and_its_password_is_not_said() {
        let pg = DbTarget::from_path(Path::new("postgres://u:secret@h/db"));
        assert!(pg.is_shared());
        assert!(!pg.label().contains("secret"), "{}", pg.label());
        let file = DbTarget::from_path(Path::new("./postgres/metrics.duckdb"));
        assert_eq!(file, DbTarget::File("./postgres/metrics.duckdb".into()));
        assert!(!file.is_shared());
    }
}
