//! Columnar, interned storage of the records to link.
//!
//! Exists because linkage compares the same values many times: normalising each value once
//! (trim, lower-case, collapse white space) and interning it per field means blocking keys
//! and comparisons work on small integer ids and shared strings, records cost a few bytes
//! per field, and an exact comparison is one integer test.

use std::collections::HashMap;
use std::sync::Arc;

use crate::error::{LinkageError, Result};

/// Sentinel value id for a missing value.
pub(crate) const MISSING_ID: u32 = u32::MAX;

/// The ordered field names shared by the records of a data set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schema {
    fields: Arc<[String]>,
}

impl Schema {
    /// A schema with these field names, in this order.
    pub fn new<I, S>(fields: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            fields: fields.into_iter().map(Into::into).collect(),
        }
    }

    /// Field names in order.
    pub fn fields(&self) -> &[String] {
        &self.fields
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether the schema has no field.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Position of a field, or [`LinkageError::UnknownField`].
    pub fn index_of(&self, field: &str) -> Result<usize> {
        self.fields
            .iter()
            .position(|f| f == field)
            .ok_or_else(|| LinkageError::UnknownField {
                field: field.to_owned(),
            })
    }
}

/// Normalises a raw value: trims, lower-cases and collapses runs of white space into one
/// space. Returns `None` when nothing is left, so that blank cells count as missing.
pub fn normalize(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    for word in raw.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        for c in word.chars() {
            out.extend(c.to_lowercase());
        }
    }
    if out.is_empty() { None } else { Some(out) }
}

/// The distinct normalised values of one field and the id of each record's value.
#[derive(Debug, Clone, Default)]
pub(crate) struct Column {
    pub(crate) values: Vec<Arc<str>>,
    pub(crate) ids: Vec<u32>,
    lookup: HashMap<Arc<str>, u32>,
}

impl Column {
    fn push(&mut self, value: Option<String>) {
        let id = match value {
            None => MISSING_ID,
            Some(v) => match self.lookup.get(v.as_str()) {
                Some(&id) => id,
                None => {
                    let id = u32::try_from(self.values.len()).expect("fewer than 2^32 values");
                    let v: Arc<str> = v.into();
                    self.values.push(v.clone());
                    self.lookup.insert(v, id);
                    id
                }
            },
        };
        self.ids.push(id);
    }

    /// The normalised value of record `row`, if present.
    #[inline]
    pub(crate) fn get(&self, row: usize) -> Option<&str> {
        match self.ids[row] {
            MISSING_ID => None,
            id => Some(&self.values[id as usize]),
        }
    }
}

/// A set of records with the same schema, stored column by column with values normalised
/// and interned on insertion.
///
/// Records are addressed by their insertion index (`u32`); each also keeps the caller's
/// external id so that results can name it.
#[derive(Debug, Clone)]
pub struct Dataset {
    schema: Schema,
    ids: Vec<String>,
    pub(crate) columns: Vec<Column>,
}

impl Dataset {
    /// An empty data set with this schema.
    pub fn new(schema: Schema) -> Self {
        let columns = vec![Column::default(); schema.len()];
        Self {
            schema,
            ids: Vec::new(),
            columns,
        }
    }

    /// The schema.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// Adds a record. `values` are in schema order; `None` or a blank string is missing.
    /// Returns the record's index.
    pub fn push<S: AsRef<str>>(
        &mut self,
        external_id: impl Into<String>,
        values: &[Option<S>],
    ) -> Result<u32> {
        let external_id = external_id.into();
        if values.len() != self.schema.len() {
            return Err(LinkageError::ArityMismatch {
                record: external_id,
                expected: self.schema.len(),
                got: values.len(),
            });
        }
        let index = u32::try_from(self.ids.len()).expect("fewer than 2^32 records");
        for (column, value) in self.columns.iter_mut().zip(values) {
            column.push(value.as_ref().and_then(|v| normalize(v.as_ref())));
        }
        self.ids.push(external_id);
        Ok(index)
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there is no record.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// External id of record `index`.
    pub fn external_id(&self, index: u32) -> &str {
        &self.ids[index as usize]
    }

    /// Normalised value of `field` (by position) for record `index`.
    pub fn value(&self, index: u32, field: usize) -> Option<&str> {
        self.columns[field].get(index as usize)
    }

    /// Number of distinct normalised values of `field` (by position).
    pub fn distinct_values(&self, field: usize) -> usize {
        self.columns[field].values.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_and_interns() {
        let mut d = Dataset::new(Schema::new(["name", "city"]));
        d.push("a", &[Some("  Ann  Lee "), Some("")]).unwrap();
        d.push("b", &[Some("ann lee"), None]).unwrap();
        assert_eq!(d.value(0, 0), Some("ann lee"));
        assert_eq!(d.value(0, 1), None);
        assert_eq!(d.value(1, 1), None);
        assert_eq!(d.distinct_values(0), 1);
        assert_eq!(d.external_id(1), "b");
    }

    #[test]
    fn rejects_wrong_arity() {
        let mut d = Dataset::new(Schema::new(["name"]));
        let err = d.push("x", &[Some("a"), Some("b")]).unwrap_err();
        assert!(matches!(
            err,
            LinkageError::ArityMismatch {
                expected: 1,
                got: 2,
                ..
            }
        ));
    }

    #[test]
    fn unknown_field() {
        let s = Schema::new(["a"]);
        assert!(s.index_of("b").is_err());
        assert_eq!(s.index_of("a").unwrap(), 0);
    }
}
