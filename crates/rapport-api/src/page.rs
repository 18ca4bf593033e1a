//! The two list shapes of the REST API: a whole list, and a page with a cursor to the next.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The largest `limit` a paged list accepts.
pub const MAX_LIMIT: u32 = 1000;
/// The `limit` of a paged list when none is given.
pub const DEFAULT_LIMIT: u32 = 100;

/// A whole list: `{"data": [...]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct List<T> {
    pub data: Vec<T>,
}

/// One page of a list: `next_cursor` is passed as `cursor` to read the next page; `null`
/// on the last.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub next_cursor: Option<String>,
}

/// The `limit` of a paged list: a whole number from 1 to [`MAX_LIMIT`]; [`DEFAULT_LIMIT`]
/// when absent. Read from a query string, a value out of range or not a number is refused
/// with the message the API always gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Limit(pub u32);

impl Default for Limit {
    fn default() -> Self {
        Limit(DEFAULT_LIMIT)
    }
}

impl Limit {
    pub fn get(self) -> usize {
        self.0 as usize
    }
}

impl<'de> Deserialize<'de> for Limit {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Limit, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Limit;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                write!(f, "a whole number from 1 to {MAX_LIMIT}")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Limit, E> {
                u32::try_from(v)
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .map(Limit)
                    .ok_or_else(|| {
                        E::custom(format!(
                            "`limit` must be a whole number from 1 to {MAX_LIMIT}"
                        ))
                    })
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Limit, E> {
                self.visit_u64(u64::try_from(v).unwrap_or(0))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Limit, E> {
                self.visit_u64(v.parse::<u64>().unwrap_or(0))
            }
        }
        d.deserialize_any(V)
    }
}

impl utoipa::PartialSchema for Limit {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::Integer)
            .minimum(Some(1))
            .maximum(Some(MAX_LIMIT))
            .default(Some(DEFAULT_LIMIT.into()))
            .description(Some("How many items at most, from 1 to 1000"))
            .into()
    }
}

impl utoipa::ToSchema for Limit {}

/// The query of a list paged by cursor: `limit` and `cursor`, nothing else.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<Limit>,
    /// `next_cursor` of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}
