//! Runtime values and the comparison rules shared by profile conditions and event filters.
//!
//! One place decides what `==`, `<`, `contains` and friends mean for JSON traits, numbers,
//! timestamps, durations and multi-valued fields, so that the evaluator and the reference
//! aggregate computation can never disagree.

use std::cmp::Ordering;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::ast::Literal;

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Val {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Ts(DateTime<Utc>),
    /// Milliseconds.
    Dur(i64),
    /// A JSON array: one value that happens to be a list.
    List(Vec<Val>),
    Obj(Map<String, Value>),
    /// Several values of one field (identifiers of a type, a trait across accounts), never
    /// null themselves. A condition holds if it holds for any of them; empty means null.
    Many(Vec<Val>),
}

impl Val {
    pub fn from_json(v: &Value) -> Val {
        match v {
            Value::Null => Val::Null,
            Value::Bool(b) => Val::Bool(*b),
            Value::Number(n) => n.as_f64().map_or(Val::Null, Val::Num),
            Value::String(s) => Val::Str(s.clone()),
            Value::Array(a) => Val::List(a.iter().map(Val::from_json).collect()),
            Value::Object(o) => Val::Obj(o.clone()),
        }
    }

    pub fn from_literal(l: &Literal) -> Val {
        match l {
            Literal::Null => Val::Null,
            Literal::Bool(b) => Val::Bool(*b),
            Literal::Number(n) => Val::Num(*n),
            Literal::String(s) => Val::Str(s.clone()),
            Literal::Duration(d) => Val::Dur(d.seconds() as i64 * 1000),
        }
    }

    pub fn many(values: impl IntoIterator<Item = Val>) -> Val {
        Val::Many(
            values
                .into_iter()
                .filter(|v| !matches!(v, Val::Null))
                .collect(),
        )
    }

    /// The truth of a value used as a condition: only `true` is true.
    pub fn truthy(&self) -> bool {
        match self {
            Val::Bool(b) => *b,
            Val::Many(vs) => vs.iter().any(Val::truthy),
            _ => false,
        }
    }

    pub fn is_null(&self) -> bool {
        match self {
            Val::Null => true,
            Val::Many(vs) => vs.is_empty(),
            _ => false,
        }
    }

    pub fn as_timestamp(&self) -> Option<DateTime<Utc>> {
        match self {
            Val::Ts(t) => Some(*t),
            Val::Str(s) => parse_timestamp(s),
            Val::Many(vs) if vs.len() == 1 => vs[0].as_timestamp(),
            _ => None,
        }
    }
}

/// Reads a time the way ingest reads clients' times (one parser for every timestamp Rapport
/// meets): see [`crate::event::parse_timestamp`].
pub fn parse_timestamp(s: &str) -> Option<DateTime<Utc>> {
    crate::event::parse_timestamp(s)
}

/// Comparisons with a positive meaning; `!=`, `not in` and `is not null` are their negations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Test {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
    Contains,
    StartsWith,
}

/// Whether `a <test> b` holds. Multi-valued operands hold if any value does.
pub(crate) fn test(t: Test, a: &Val, b: &Val) -> bool {
    match (a, b) {
        (Val::Many(vs), _) if vs.is_empty() => test(t, &Val::Null, b),
        (Val::Many(vs), _) => vs.iter().any(|v| test(t, v, b)),
        (_, Val::Many(vs)) if vs.is_empty() => test(t, a, &Val::Null),
        (_, Val::Many(vs)) => vs.iter().any(|v| test(t, a, v)),
        _ => match t {
            Test::Eq => equal(a, b),
            Test::Lt => order(a, b) == Some(Ordering::Less),
            Test::Le => matches!(order(a, b), Some(Ordering::Less | Ordering::Equal)),
            Test::Gt => order(a, b) == Some(Ordering::Greater),
            Test::Ge => matches!(order(a, b), Some(Ordering::Greater | Ordering::Equal)),
            Test::Contains => match (a, b) {
                (Val::Str(s), Val::Str(needle)) => s.contains(needle.as_str()),
                (Val::List(items), x) => items.iter().any(|i| equal(i, x)),
                _ => false,
            },
            Test::StartsWith => match (a, b) {
                (Val::Str(s), Val::Str(prefix)) => s.starts_with(prefix.as_str()),
                _ => false,
            },
        },
    }
}

/// `a in items`.
pub(crate) fn in_list(a: &Val, items: &[Val]) -> bool {
    items.iter().any(|i| test(Test::Eq, a, i))
}

fn equal(a: &Val, b: &Val) -> bool {
    match (a, b) {
        (Val::Null, Val::Null) => true,
        (Val::Bool(x), Val::Bool(y)) => x == y,
        (Val::Num(x), Val::Num(y)) => x == y,
        (Val::Str(x), Val::Str(y)) => x == y,
        (Val::Ts(x), Val::Ts(y)) => x == y,
        (Val::Ts(x), Val::Str(s)) | (Val::Str(s), Val::Ts(x)) => parse_timestamp(s) == Some(*x),
        (Val::Dur(x), Val::Dur(y)) => x == y,
        (Val::List(x), Val::List(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| equal(a, b))
        }
        (Val::Obj(x), Val::Obj(y)) => x == y,
        _ => false,
    }
}

fn order(a: &Val, b: &Val) -> Option<Ordering> {
    match (a, b) {
        (Val::Num(x), Val::Num(y)) => x.partial_cmp(y),
        (Val::Str(x), Val::Str(y)) => Some(x.cmp(y)),
        (Val::Ts(x), Val::Ts(y)) => Some(x.cmp(y)),
        (Val::Ts(x), Val::Str(s)) => parse_timestamp(s).map(|y| x.cmp(&y)),
        (Val::Str(s), Val::Ts(y)) => parse_timestamp(s).map(|x| x.cmp(y)),
        (Val::Dur(x), Val::Dur(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// Follows `path` through nested JSON objects.
pub(crate) fn lookup<'a>(root: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(root, |v, key| v.as_object()?.get(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_parse_in_three_forms() {
        let midnight = parse_timestamp("2024-03-01").unwrap();
        assert_eq!(midnight.to_rfc3339(), "2024-03-01T00:00:00+00:00");
        assert_eq!(parse_timestamp("2024-03-01T02:00:00+02:00"), Some(midnight));
        assert_eq!(parse_timestamp("2024-03-01T00:00:00"), Some(midnight));
        assert_eq!(parse_timestamp("2024-13-01"), None);
        assert_eq!(parse_timestamp("yesterday"), None);
    }

    #[test]
    fn many_means_any_and_empty_means_null() {
        let emails = Val::many([Val::Str("a@x".into()), Val::Null, Val::Str("b@x".into())]);
        assert!(test(Test::Eq, &emails, &Val::Str("b@x".into())));
        assert!(!test(Test::Eq, &emails, &Val::Null));
        let none = Val::many([Val::Null]);
        assert!(none.is_null());
        assert!(test(Test::Eq, &none, &Val::Null));
    }

    #[test]
    fn mixed_types_never_compare() {
        assert!(!test(Test::Eq, &Val::Str("5".into()), &Val::Num(5.0)));
        assert!(!test(Test::Lt, &Val::Null, &Val::Num(5.0)));
        assert!(!test(Test::Ge, &Val::Bool(true), &Val::Bool(false)));
    }
}
