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
