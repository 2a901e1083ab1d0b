//! Timestamps as µs since 1970 in and out of PostgreSQL's `timestamp`
//! (µs since 2000 in its binary format), so no date-time crate is needed
//! for the columns sandstack itself reads and writes.

use std::error::Error;

use bytes::{BufMut, BytesMut};
use postgres::types::{to_sql_checked, FromSql, IsNull, ToSql, Type};

/// µs from 1970-01-01 to PostgreSQL's epoch, 2000-01-01.
pub(super) const PG_EPOCH_US: i64 = 946_684_800_000_000;

/// µs since 1970-01-01 UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Micros(pub i64);

impl ToSql for Micros {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        out.put_i64(self.0.saturating_sub(PG_EPOCH_US));
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::TIMESTAMP | Type::TIMESTAMPTZ)
    }

    to_sql_checked!();
}

impl<'a> FromSql<'a> for Micros {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn Error + Sync + Send>> {
        let bytes: [u8; 8] = raw.try_into()?;
        Ok(Micros(
            i64::from_be_bytes(bytes).saturating_add(PG_EPOCH_US),
        ))
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::TIMESTAMP | Type::TIMESTAMPTZ)
    }
}
