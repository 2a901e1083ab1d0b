//! Names from the metrics folder that reach SQL and file names: a batch's
//! name and its `table_key`, checked against safe character sets at load.

/// Longest `metric_batch`.
pub const MAX_BATCH_NAME_LEN: usize = 128;

/// A batch name reaches SQL templates, file names and URLs: letters,
/// digits, `_`, `-` and `.`, starting with a letter, digit or `_`.
pub fn check_batch_name(name: &str) -> Result<(), String> {
    let ok_start = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok_start && ok_chars && name.len() <= MAX_BATCH_NAME_LEN {
        return Ok(());
    }
    let shown: String = name.chars().take(60).collect();
    Err(format!(
        "{:?} is not a valid batch name: use at most {MAX_BATCH_NAME_LEN} letters, digits, `_`, `-` and `.`, starting with a letter, digit or `_`",
        shown
    ))
}

/// `table_key` may be `table` or `schema.table`, each an SQL identifier, as
/// Anomstack's `tmp.metrics`, and not one of the names sandstack and the
/// engines keep for themselves. Anything else is refused: it is spliced into
/// SQL, and a batch claiming `sandstack_runs` would write the run history.
pub fn validate_table_key(key: &str) -> Result<(), String> {
    check_table_key_syntax(key)?;
    // sandstack's own tables (run history, pauses, claims) and the engines'
    // catalogs are not a batch's to claim as its metrics table.
    let lower = key.to_ascii_lowercase();
    let parts: Vec<&str> = lower.split('.').collect();
    let reserved_prefix = ["sandstack_", "pg_", "duckdb_", "sqlite_"];
    let reserved_schema = ["information_schema", "pg_catalog", "temp", "system"];
    if parts
        .iter()
        .any(|p| reserved_prefix.iter().any(|r| p.starts_with(r)))
        || (parts.len() == 2 && reserved_schema.contains(&parts[0]))
    {
        return Err(format!(
            "`{lower}` is reserved: names starting with sandstack_, pg_, duckdb_ or sqlite_ and the schemas {} \
             belong to sandstack and the database engines",
            reserved_schema.join(", ")
        ));
    }
    Ok(())
}

/// The form alone: `table` or `schema.table`, each a plain SQL identifier.
/// The store checks this on every key it quotes; which names a batch may
/// claim is the loader's rule (`validate_table_key`), so sandstack's own
/// scratch tables (the store benchmark's) can still be reached.
pub fn check_table_key_syntax(key: &str) -> Result<(), String> {
    let parts: Vec<&str> = key.split('.').collect();
    if parts.len() > 2 {
        return Err("use `table` or `schema.table`".into());
    }
    for part in parts {
        let mut chars = part.chars();
        let ok_start = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        if !ok_start || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "`{part}` is not a plain identifier (letters, digits and _, not starting with a digit)"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_keys_are_identifiers() {
        assert!(validate_table_key("metrics").is_ok());
        assert!(validate_table_key("tmp.metrics").is_ok());
        assert!(validate_table_key("a.b.c").is_err());
        assert!(validate_table_key("metrics; drop table x").is_err());
        assert!(validate_table_key("1abc").is_err());
        assert!(validate_table_key("").is_err());
        for reserved in [
            "sandstack_runs",
            "SANDSTACK_PAUSED",
            "pg_catalog.metrics",
            "main.sandstack_ticks",
            "information_schema.tables",
            "duckdb_settings",
        ] {
            let e = validate_table_key(reserved).expect_err(reserved);
            assert!(e.contains("is reserved"), "{reserved}: {e}");
        }
        assert!(validate_table_key("main.metrics").is_ok());
    }
}
