//! A batch's `table_key`, checked once and split into schema and table: the
//! store takes this type, so a key reaching SQL has always been checked.

use std::fmt;

/// `table` or `schema.table`, each a plain SQL identifier.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableKey {
    pub(crate) schema: Option<String>,
    pub(crate) table: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid table_key `{key}`: {message}")]
pub struct TableKeyError {
    pub key: String,
    pub message: String,
}

impl TableKey {
    /// The form alone ([`super::check_table_key_syntax`]): what sandstack's
    /// own scratch tables use. A batch's key comes from [`TableKey::claim`].
    pub fn parse(key: &str) -> Result<Self, TableKeyError> {
        super::check_table_key_syntax(key).map_err(|message| TableKeyError {
            key: key.to_string(),
            message,
        })?;
        Ok(match key.split_once('.') {
            Some((s, t)) => TableKey {
                schema: Some(s.to_string()),
                table: t.to_string(),
            },
            None => TableKey {
                schema: None,
                table: key.to_string(),
            },
        })
    }

    /// A key a batch may claim: the form, and not a name sandstack or the
    /// engines keep for themselves ([`super::validate_table_key`]).
    pub fn claim(key: &str) -> Result<Self, TableKeyError> {
        super::validate_table_key(key).map_err(|message| TableKeyError {
            key: key.to_string(),
            message,
        })?;
        Self::parse(key)
    }

    /// Stands in for a refused key while the loader gathers the batch's
    /// other errors (the spec is then discarded).
    pub(super) fn fallback() -> Self {
        TableKey {
            schema: None,
            table: "metrics".into(),
        }
    }

    /// `"schema"."table"` or `"table"` (safe to splice: both are identifiers).
    pub fn quoted(&self) -> String {
        match &self.schema {
            Some(s) => format!("\"{s}\".\"{}\"", self.table),
            None => format!("\"{}\"", self.table),
        }
    }
}

/// As the batch wrote it: `schema.table` or `table`.
impl fmt::Display for TableKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(s) => write!(f, "{s}.{}", self.table),
            None => f.write_str(&self.table),
        }
    }
}

impl std::str::FromStr for TableKey {
    type Err = TableKeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_quotes() {
        assert_eq!(
            TableKey::parse("metrics").expect("ok").quoted(),
            "\"metrics\""
        );
        let k = TableKey::parse("s.metrics").expect("ok");
        assert_eq!(k.quoted(), "\"s\".\"metrics\"");
        assert_eq!(k.to_string(), "s.metrics");
        // The store takes only a TableKey, so this is where such a key stops.
        assert!(TableKey::parse("a\"; DROP TABLE x; --").is_err());
    }

    #[test]
    fn a_batch_cannot_claim_a_reserved_name() {
        assert!(TableKey::parse("sandstack_runs").is_ok());
        let e = TableKey::claim("sandstack_runs").expect_err("reserved");
        assert!(e.to_string().contains("reserved"), "{e}");
    }
}
