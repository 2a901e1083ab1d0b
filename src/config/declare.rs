//! The `settings!` macro: one declaration per configuration key (its field,
//! type, key, default as YAML text, and one-line doc), from which a
//! section's struct, its reader and its rows in the key table
//! ([`super::keys`]) are all made.

use super::fields::{Seconds, Structured, UtcMicros};

/// One key as documented: `sandstack keys` and the README's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyDoc {
    pub name: &'static str,
    /// YAML text, read the same way as a value in a batch file.
    pub default: &'static str,
    pub doc: &'static str,
    pub section: &'static str,
}

/// How a value read as a wrapper type (`Seconds`, `Structured<T>`) becomes
/// the field's type.
pub trait Via<T> {
    fn into_field(self) -> T;
}

impl Via<f64> for Seconds {
    fn into_field(self) -> f64 {
        self.0
    }
}

impl Via<i64> for UtcMicros {
    fn into_field(self) -> i64 {
        self.0
    }
}

impl<T> Via<T> for Structured<T> {
    fn into_field(self) -> T {
        self.0
    }
}

#[doc(hidden)]
#[macro_export]
macro_rules! read_declared {
    ($r:expr, $key:literal, $default:literal, $ty:ty) => {
        $r.declared::<$ty>($key, $default)
    };
    ($r:expr, $key:literal, $default:literal, $ty:ty, $via:ty) => {
        $crate::config::declare::Via::<$ty>::into_field($r.declared::<$via>($key, $default))
    };
}

/// Declare a section of settings:
///
/// ```text
/// settings! {
///     /// What the section is.
///     #[derive(Serialize)]
///     "section" => pub struct Name {
///         /// The key's one-line doc.
///         field: Type [ReadAsType] = "key", "default as YAML";
///     }
/// }
/// ```
///
/// `[ReadAsType]` is optional: a wrapper read instead of `Type` (seconds,
/// UTC times, serde-read structures).
#[macro_export]
macro_rules! settings {
    (
        $(#[$attr:meta])*
        $section:literal => pub struct $name:ident {
            $(
                $(#[doc = $doc:literal])+
                $field:ident : $ty:ty $([$via:ty])? = $key:literal, $default:literal;
            )*
        }
    ) => {
        $(#[$attr])*
        #[derive(Debug, Clone, PartialEq)]
        pub struct $name {
            $( $(#[doc = $doc])+ pub $field: $ty, )*
        }

        impl $name {
            pub const KEYS: &'static [$crate::config::declare::KeyDoc] = &[
                $( $crate::config::declare::KeyDoc {
                    name: $key,
                    default: $default,
                    doc: concat!($($doc),+),
                    section: $section,
                }, )*
            ];

            pub(crate) fn read(r: &mut $crate::config::fields::FieldReader) -> Self {
                $name {
                    $( $field: $crate::read_declared!(r, $key, $default, $ty $(, $via)?), )*
                }
            }
        }

        impl Default for $name {
            /// Every key at its declared default.
            fn default() -> Self {
                let empty = serde_yaml_ng::Mapping::new();
                let mut r = $crate::config::fields::FieldReader::new(
                    std::path::Path::new("<declared defaults>"),
                    &empty,
                    Default::default(),
                );
                Self::read(&mut r)
            }
        }
    };
}
