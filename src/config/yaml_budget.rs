//! Reading a YAML file that bad input cannot stall: the file's size is
//! capped, and so is what it expands to. YAML aliases let a 1 MB file
//! stand for gigabytes (one large scalar aliased thousands of times,
//! "billion laughs", or empty lists aliased into tens of millions of
//! values, which cost memory though they hold no text); counting aliases
//! is not enough, so a first pass walks the document with serde, charging
//! every value as aliases expand it (strings are borrowed, nothing is
//! copied) what it will cost parsed: its text, and [`NODE_BYTES`] for the
//! value itself, an empty list included. It stops at the cap.
//! serde_yaml_ng's own recursion limit refuses deep nesting. Hand-written
//! because no YAML crate here offers an expanded-size limit.

use std::cell::Cell;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Largest YAML file read.
pub const MAX_FILE_BYTES: u64 = 4 << 20;
/// Largest document a YAML file may expand to (its values' text and
/// [`NODE_BYTES`] per value, aliases expanded).
pub const MAX_EXPANDED_BYTES: usize = 32 << 20;
/// What one parsed value costs besides its text (a `serde_yaml_ng::Value`
/// and its place in a list or map).
pub const NODE_BYTES: usize = 64;

/// What the merged configurations of one folder's batches may cost in all
/// (see [`cost`]): the defaults are every batch's, so their size counts
/// once per batch.
pub const MAX_FOLDER_CONFIG_BYTES: usize = 256 << 20;

/// What a parsed value costs, as [`check_expanded`] counts it.
pub fn cost(value: &serde_yaml_ng::Value) -> usize {
    use serde_yaml_ng::Value;
    NODE_BYTES
        + match value {
            Value::String(s) => s.len(),
            Value::Sequence(items) => items.iter().map(cost).sum(),
            Value::Mapping(m) => mapping_cost(m) - NODE_BYTES,
            Value::Tagged(t) => cost(&t.value),
            _ => 0,
        }
}

/// What a mapping costs, as [`cost`] counts it.
pub fn mapping_cost(m: &serde_yaml_ng::Mapping) -> usize {
    NODE_BYTES + m.iter().map(|(k, v)| cost(k) + cost(v)).sum::<usize>()
}

/// Check that `text` expands to at most `cap` bytes; the error says so.
pub fn check_expanded(text: &str, cap: usize) -> Result<(), String> {
    let used = Cell::new(0usize);
    let de = serde_yaml_ng::Deserializer::from_str(text);
    match (Budget { used: &used, cap }).deserialize(de) {
        Ok(()) => Ok(()),
        Err(_) if used.get() > cap => Err(format!(
            "it expands to more than {} MiB parsed (its values' text and {NODE_BYTES} bytes per value, \
             YAML aliases repeated); write the values out, or make them fewer and smaller",
            cap >> 20
        )),
        // Any other problem is the real parser's to report.
        Err(_) => Ok(()),
    }
}

#[derive(Clone, Copy)]
struct Budget<'a> {
    used: &'a Cell<usize>,
    cap: usize,
}

impl Budget<'_> {
    fn spend<E: serde::de::Error>(&self, n: usize) -> Result<(), E> {
        let total = self.used.get().saturating_add(n);
        self.used.set(total);
        if total > self.cap {
            Err(E::custom("expanded size over the cap"))
        } else {
            Ok(())
        }
    }
}

impl<'de> DeserializeSeed<'de> for Budget<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Budget<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        self.spend(NODE_BYTES)
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
        self.spend(NODE_BYTES)
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
        self.spend(NODE_BYTES)
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
        self.spend(NODE_BYTES)
    }
    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<(), E> {
        self.spend(NODE_BYTES + s.len())
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.spend(NODE_BYTES)
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<(), E> {
        self.spend(NODE_BYTES)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        self.deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        // The list itself, empty or not; each element charges its own.
        self.spend(NODE_BYTES)?;
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.spend(NODE_BYTES)?;
        while map.next_key_seed(self)?.is_some() {
            map.next_value_seed(self)?;
        }
        Ok(())
    }
    fn visit_enum<A: serde::de::EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        // Tagged values (`!tag value`): count the value.
        use serde::de::VariantAccess;
        let ((), variant) = data.variant_seed(self)?;
        variant.newtype_variant_seed(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_documents_pass() {
        assert_eq!(
            check_expanded("a: 1\nb: [x, y]\nc: {d: &x e, f: *x}\n", 1 << 20),
            Ok(())
        );
    }

    #[test]
    fn a_large_scalar_aliased_many_times_is_refused_quickly() {
        let big = "x".repeat(1 << 20);
        let text = format!("a: &a \"{big}\"\nb: [{}]\n", vec!["*a"; 5000].join(", "));
        // Unchecked, this holds gigabytes; the time bound leaves a loaded
        // machine all it needs.
        let t = std::time::Instant::now();
        let err = check_expanded(&text, MAX_EXPANDED_BYTES).unwrap_err();
        assert!(err.contains("expands to more than 32 MiB"), "{err}");
        assert!(
            t.elapsed() < std::time::Duration::from_secs(30),
            "{:?}",
            t.elapsed()
        );
    }

    #[test]
    fn empty_lists_aliased_into_millions_of_values_are_refused_quickly() {
        // 2000 aliases of a list of 1000 empty lists: a small file, two
        // million values parsed, and few enough aliases that the YAML
        // library's own repetition limit lets it through.
        let mut text = format!("a: &a [{}]\n", vec!["[]"; 1000].join(", "));
        text.push_str(&format!("b: [{}]\n", vec!["*a"; 2000].join(", ")));
        assert!(text.len() < 16 << 10, "{}", text.len());
        assert!(serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&text).is_ok());
        // Unchecked, this holds gigabytes; the time bound leaves a loaded
        // machine all it needs.
        let t = std::time::Instant::now();
        let err = check_expanded(&text, MAX_EXPANDED_BYTES).unwrap_err();
        assert!(err.contains("more than 32 MiB parsed"), "{err}");
        assert!(
            t.elapsed() < std::time::Duration::from_secs(30),
            "{:?}",
            t.elapsed()
        );
    }

    #[test]
    fn billion_laughs_is_refused() {
        let mut text = String::from("l0: &l0 \"lol\"\n");
        for i in 1..30 {
            let prev = format!("*l{}", i - 1);
            text.push_str(&format!(
                "l{i}: &l{i} [{}]\n",
                [prev.as_str(); 10].join(", ")
            ));
        }
        // The YAML library stops this one itself, before the budget is
        // spent: the budget leaves its error to the parse that reports it.
        assert_eq!(check_expanded(&text, MAX_EXPANDED_BYTES), Ok(()));
        let theirs = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&text)
            .expect_err("the library's repetition limit")
            .to_string();
        assert!(theirs.starts_with("repetition limit exceeded"), "{theirs}");
    }

    /// Laughs on a large scalar: few enough alias jumps that the YAML
    /// library's own repetition limit lets it through, so only the budget
    /// stands between it and 62 MiB in memory.
    #[test]
    fn laughs_the_yaml_library_allows_are_refused_by_the_budget() {
        let mut text = format!("l0: &l0 \"{}\"\n", "x".repeat(64 << 10));
        for i in 1..=3 {
            let prev = format!("*l{}", i - 1);
            text.push_str(&format!(
                "l{i}: &l{i} [{}]\n",
                [prev.as_str(); 10].join(", ")
            ));
        }
        assert!(serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&text).is_ok());
        let ours = check_expanded(&text, MAX_EXPANDED_BYTES).expect_err("over the budget");
        assert!(
            ours.starts_with("it expands to more than 32 MiB parsed"),
            "{ours}"
        );
    }
}
