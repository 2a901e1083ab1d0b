//! A batch's `table_key`, checked and split into schema and table, quoted
//! for SQL.

use super::StoreError;

#[derive(Debug, Clone)]
pub struct TableKey {
    pub(crate) schema: Option<String>,
    pub(crate) table: String,
}

impl TableKey {
    pub fn parse(key: &str) -> Result<Self, StoreError> {
        crate::config::check_table_key_syntax(key).map_err(|message| StoreError::TableKey {
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

    /// `"schema"."table"` or `"table"`.
    pub fn quoted(&self) -> String {
        match &self.schema {
            Some(s) => format!("\"{s}\".\"{}\"", self.table),
            None => format!("\"{}\"", self.table),
        }
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
        assert_eq!(
            TableKey::parse("s.metrics").expect("ok").quoted(),
            "\"s\".\"metrics\""
        );
        assert!(matches!(
            TableKey::parse("a\"; DROP TABLE x; --"),
            Err(StoreError::TableKey { .. })
        ));
    }
}
