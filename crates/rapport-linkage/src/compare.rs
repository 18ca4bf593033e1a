//! Field comparators and agreement levels.
//!
//! Exists to turn a pair of field values into one small integer, the *agreement level*,
//! which is all the Fellegi–Sunter model sees. Every comparator yields a similarity in
//! `[0, 1]` (1 for identical values); a [`FieldComparison`] cuts that similarity into
//! levels with descending thresholds, so that level 0 is the strongest agreement and the
//! last level is "disagree". A missing value on either side has its own level,
//! [`Level::Missing`], which carries no evidence (weight 0).

use serde::{Deserialize, Serialize};

use crate::error::{LinkageError, Result};
use crate::phonetic::soundex;

/// Most levels a comparison may have (thresholds + the final "else" level).
pub const MAX_LEVELS: usize = 16;

/// Internal code of a missing value in a comparison vector.
pub(crate) const MISSING_LEVEL: u8 = u8::MAX;

/// How two values of a field are compared. Each yields a similarity in `[0, 1]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Comparator {
    /// 1 when the normalised values are equal, else 0.
    Exact,
    /// Jaro–Winkler similarity (prefix scale 0.1, prefix up to 4, boost above 0.7).
    JaroWinkler,
    /// `1 - levenshtein / max(len)` over characters.
    Levenshtein,
    /// `1 - damerau_levenshtein / max(len)`: like Levenshtein, with adjacent
    /// transpositions costing one edit. Good for digit strings such as dates and phones.
    DamerauLevenshtein,
    /// Numbers: `max(0, 1 - |a - b| / scale)`. Values that do not parse compare exactly.
    Numeric {
        /// Difference at which similarity reaches 0.
        scale: f64,
    },
    /// Dates (`YYYYMMDD`, `YYYY-MM-DD` or `YYYY/MM/DD`): `max(0, 1 - |days| / scale_days)`.
    /// Values that do not parse as a valid date compare by Damerau–Levenshtein, so
    /// that typing errors still count as near agreement.
    Date {
        /// Number of days at which similarity reaches 0.
        scale_days: f64,
    },
    /// 1 when the American Soundex codes are equal, else 0 (values without letters
    /// compare exactly).
    Soundex,
    /// Street lines: 0 when both start with a house number and the numbers differ (two
    /// homes on one street are different addresses however alike the lines read), else
    /// Jaro–Winkler.
    StreetAddress,
}

impl Comparator {
    /// Similarity of two normalised values, in `[0, 1]`, symmetric, 1 when `a == b`.
    pub fn similarity(&self, a: &str, b: &str) -> f64 {
        if a == b {
            return 1.0;
        }
        let s = match *self {
            Comparator::Exact => 0.0,
            Comparator::JaroWinkler => strsim::jaro_winkler(a, b),
            Comparator::Levenshtein => strsim::normalized_levenshtein(a, b),
            Comparator::DamerauLevenshtein => strsim::normalized_damerau_levenshtein(a, b),
            Comparator::Numeric { scale } => match (parse_number(a), parse_number(b)) {
                (Some(x), Some(y)) => closeness((x - y).abs(), scale),
                _ => 0.0,
            },
            Comparator::Date { scale_days } => match (parse_date(a), parse_date(b)) {
                (Some(x), Some(y)) => closeness((x - y).abs() as f64, scale_days),
                _ => strsim::normalized_damerau_levenshtein(a, b),
            },
            Comparator::Soundex => match (soundex(a), soundex(b)) {
                (Some(x), Some(y)) if x == y => 1.0,
                _ => 0.0,
            },
            Comparator::StreetAddress => match (house_number(a), house_number(b)) {
                (Some(x), Some(y)) if x != y => 0.0,
                _ => strsim::jaro_winkler(a, b),
            },
        };
        // Guard against rounding slightly outside the unit interval and NaN.
        if s.is_nan() { 0.0 } else { s.clamp(0.0, 1.0) }
    }

    fn validate(&self, field: &str) -> Result<()> {
        let bad = |reason: &str| LinkageError::InvalidLevels {
            field: field.to_owned(),
            reason: reason.to_owned(),
        };
        match *self {
            Comparator::Numeric { scale } if !(scale.is_finite() && scale > 0.0) => {
                Err(bad("numeric scale must be finite and positive"))
            }
            Comparator::Date { scale_days } if !(scale_days.is_finite() && scale_days > 0.0) => {
                Err(bad("date scale must be finite and positive"))
            }
            _ => Ok(()),
        }
    }
}

fn closeness(diff: f64, scale: f64) -> f64 {
    (1.0 - diff / scale).max(0.0)
}

fn parse_number(s: &str) -> Option<f64> {
    s.parse::<f64>().ok().filter(|x| x.is_finite())
}

/// Days since 0000-03-01 in the proleptic Gregorian calendar, for a valid date written
/// `YYYYMMDD`, `YYYY-MM-DD` or `YYYY/MM/DD`.
pub(crate) fn parse_date(s: &str) -> Option<i64> {
    let digits: Vec<u8> = match s.len() {
        8 => s.bytes().collect(),
        10 => {
            let b = s.as_bytes();
            let sep = b[4];
            if !(sep == b'-' || sep == b'/') || b[7] != sep {
                return None;
            }
            b[..4]
                .iter()
                .chain(&b[5..7])
                .chain(&b[8..])
                .copied()
                .collect()
        }
        _ => return None,
    };
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let num = |r: std::ops::Range<usize>| {
        digits[r]
            .iter()
            .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0'))
    };
    let (y, m, d) = (num(0..4), num(4..6), num(6..8));
    if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return None;
    }
    // Days-from-civil (shifted so that the year starts in March).
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

/// How one field contributes to the comparison vector: which field, which comparator,
/// and the similarity thresholds that define its agreement levels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldComparison {
    /// Field name in the schema.
    pub field: String,
    /// Comparator.
    pub comparator: Comparator,
    /// Strictly descending similarity thresholds in `(0, 1]`. Level `i` means
    /// "similarity ≥ `thresholds[i]`" (and below the previous one); the last level
    /// means "below every threshold", i.e. disagreement.
    pub thresholds: Vec<f64>,
    /// Another field whose values are often swapped with this one (given name and
    /// surname, two address lines). When set, a pair that disagrees directly but whose
    /// values agree crosswise (this field against the other one's, both ways, at the
    /// lowest threshold) gets an extra level, "swapped", just before disagreement; EM
    /// estimates its own m and u.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swap_with: Option<String>,
}

impl FieldComparison {
    /// A comparison with explicit thresholds.
    pub fn new(field: impl Into<String>, comparator: Comparator, thresholds: &[f64]) -> Self {
        Self {
            field: field.into(),
            comparator,
            thresholds: thresholds.to_vec(),
            swap_with: None,
        }
    }

    /// Adds a "swapped" level against `other` (see [`FieldComparison::swap_with`]).
    pub fn swapped_with(mut self, other: impl Into<String>) -> Self {
        self.swap_with = Some(other.into());
        self
    }

    /// Two levels: equal / not equal.
    pub fn exact(field: impl Into<String>) -> Self {
        Self::new(field, Comparator::Exact, &[1.0])
    }

    /// Jaro–Winkler with the given thresholds, e.g. `&[1.0, 0.94, 0.88]` for
    /// exact / very close / close / else.
    pub fn jaro_winkler(field: impl Into<String>, thresholds: &[f64]) -> Self {
        Self::new(field, Comparator::JaroWinkler, thresholds)
    }

    /// Number of non-missing levels.
    pub fn levels(&self) -> usize {
        self.thresholds.len() + 1 + usize::from(self.swap_with.is_some())
    }

    /// Human-readable description of level `level`, used in explanations.
    pub fn level_label(&self, level: Level) -> String {
        match level {
            Level::Missing => "missing".to_owned(),
            Level::Agreement(l) => {
                let l = usize::from(l);
                if l == 0 && self.thresholds.first() == Some(&1.0) {
                    "exact".to_owned()
                } else if l < self.thresholds.len() {
                    format!("similarity >= {}", self.thresholds[l])
                } else if l + 1 < self.levels() {
                    format!("swapped with {}", self.swap_with.as_deref().unwrap_or("?"))
                } else {
                    "disagree".to_owned()
                }
            }
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        self.comparator.validate(&self.field)?;
        let bad = |reason: String| LinkageError::InvalidLevels {
            field: self.field.clone(),
            reason,
        };
        if self.thresholds.is_empty() {
            return Err(bad("at least one threshold is needed".into()));
        }
        if self.levels() > MAX_LEVELS {
            return Err(bad(format!("at most {MAX_LEVELS} levels")));
        }
        if self.swap_with.as_deref() == Some(self.field.as_str()) {
            return Err(bad("a field cannot be swapped with itself".into()));
        }
        for &t in &self.thresholds {
            if !(t > 0.0 && t <= 1.0) {
                return Err(bad(format!("threshold {t} is not in (0, 1]")));
            }
        }
        if self.thresholds.windows(2).any(|w| w[0] <= w[1]) {
            return Err(bad("thresholds must be strictly descending".into()));
        }
        Ok(())
    }

    /// Level of a similarity.
    #[inline]
    pub(crate) fn level_of(&self, similarity: f64) -> u8 {
        self.thresholds
            .iter()
            .position(|&t| similarity >= t)
            .unwrap_or(self.thresholds.len()) as u8
    }

    /// Level of a pair of (normalised) values, without the swap check.
    #[inline]
    pub(crate) fn compare(&self, a: Option<&str>, b: Option<&str>) -> u8 {
        self.compare_swapped(a, b, None, None)
    }

    /// Level of a pair of (normalised) values; `a_other` and `b_other` are the values of
    /// the [`FieldComparison::swap_with`] field on each side (ignored without one).
    #[inline]
    pub(crate) fn compare_swapped(
        &self,
        a: Option<&str>,
        b: Option<&str>,
        a_other: Option<&str>,
        b_other: Option<&str>,
    ) -> u8 {
        let (Some(a), Some(b)) = (a, b) else {
            return MISSING_LEVEL;
        };
        let level = self.level_of(self.comparator.similarity(a, b));
        let disagree = self.thresholds.len() as u8;
        if level < disagree || self.swap_with.is_none() {
            return level;
        }
        let lowest = self.thresholds[self.thresholds.len() - 1];
        let swapped = match (a_other, b_other) {
            (Some(ao), Some(bo)) => {
                self.comparator.similarity(a, bo) >= lowest
                    && self.comparator.similarity(ao, b) >= lowest
            }
            _ => false,
        };
        if swapped { disagree } else { disagree + 1 }
    }
}

/// The agreement level of one field for one pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Level index, 0 = strongest agreement, last = disagreement.
    Agreement(u8),
    /// A value was missing on either side: no evidence either way.
    Missing,
}

impl Level {
    pub(crate) fn from_code(code: u8) -> Self {
        if code == MISSING_LEVEL {
            Level::Missing
        } else {
            Level::Agreement(code)
        }
    }
}

/// The house number a street line starts with (`12`, `12b`), if it does.
fn house_number(line: &str) -> Option<&str> {
    let line = line.trim_start();
    if !line.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let end = line
        .char_indices()
        .find(|&(_, c)| !c.is_ascii_alphanumeric())
        .map_or(line.len(), |(i, _)| i);
    Some(&line[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-3
    }

    #[test]
    fn jaro_winkler_known_answers() {
        let jw = Comparator::JaroWinkler;
        assert!(close(jw.similarity("martha", "marhta"), 0.961));
        assert!(close(jw.similarity("dwayne", "duane"), 0.84));
        assert!(close(jw.similarity("dixon", "dicksonx"), 0.813));
        assert_eq!(jw.similarity("abc", "xyz"), 0.0);
        assert_eq!(jw.similarity("same", "same"), 1.0);
    }

    #[test]
    fn edit_distance_known_answers() {
        assert!(close(
            Comparator::Levenshtein.similarity("kitten", "sitting"),
            1.0 - 3.0 / 7.0
        ));
        assert!(close(
            Comparator::Levenshtein.similarity("martha", "marhta"),
            1.0 - 2.0 / 6.0
        ));
        assert!(close(
            Comparator::DamerauLevenshtein.similarity("martha", "marhta"),
            1.0 - 1.0 / 6.0
        ));
        assert!(close(
            Comparator::DamerauLevenshtein.similarity("19560409", "19564009"),
            1.0 - 1.0 / 8.0
        ));
    }

    #[test]
    fn numeric_and_date() {
        let n = Comparator::Numeric { scale: 10.0 };
        assert!(close(n.similarity("12", "15"), 0.7));
        assert_eq!(n.similarity("12", "40"), 0.0);
        assert_eq!(n.similarity("12", "x"), 0.0);
        let d = Comparator::Date { scale_days: 10.0 };
        assert!(close(d.similarity("19560409", "1956-04-11"), 0.8));
        assert!(close(d.similarity("20000228", "20000301"), 0.8)); // leap year
        assert!(close(d.similarity("20000229", "20000301"), 0.9)); // leap year
        assert_eq!(parse_date("19000229"), None);
        // An invalid date falls back to edit similarity.
        assert!(close(d.similarity("19560409", "19560049"), 1.0 - 1.0 / 8.0));
    }

    #[test]
    fn soundex_comparator() {
        assert_eq!(Comparator::Soundex.similarity("smith", "smyth"), 1.0);
        assert_eq!(Comparator::Soundex.similarity("smith", "jones"), 0.0);
        let street = Comparator::StreetAddress;
        assert_eq!(street.similarity("69 clarke road", "60 clarke road"), 0.0);
        assert_eq!(street.similarity("12b quay lane", "12 quay lane"), 0.0);
        assert!(street.similarity("12 quayside lane", "12 quayside ln") > 0.9);
        assert!(street.similarity("flat 3, quay lane", "quay lane") > 0.0);
    }

    #[test]
    fn levels_and_labels() {
        let c = FieldComparison::jaro_winkler("name", &[1.0, 0.94, 0.88]);
        c.validate().unwrap();
        assert_eq!(c.compare(Some("martha"), Some("martha")), 0);
        assert_eq!(c.compare(Some("martha"), Some("marhta")), 1);
        assert_eq!(c.compare(Some("dixon"), Some("dicksonx")), 3);
        assert_eq!(c.compare(None, Some("x")), MISSING_LEVEL);
        assert_eq!(c.level_label(Level::Agreement(0)), "exact");
        assert_eq!(c.level_label(Level::Agreement(1)), "similarity >= 0.94");
        assert_eq!(c.level_label(Level::Agreement(3)), "disagree");
        assert_eq!(c.level_label(Level::Missing), "missing");
    }

    #[test]
    fn swapped_level() {
        let c = FieldComparison::jaro_winkler("given", &[1.0, 0.9]).swapped_with("surname");
        c.validate().unwrap();
        assert_eq!(c.levels(), 4);
        // Direct agreement wins.
        assert_eq!(
            c.compare_swapped(Some("ann"), Some("ann"), Some("lee"), Some("x")),
            0
        );
        // Given and surname swapped.
        assert_eq!(
            c.compare_swapped(Some("ann"), Some("lee"), Some("lee"), Some("ann")),
            2
        );
        assert_eq!(c.level_label(Level::Agreement(2)), "swapped with surname");
        // Only one direction agrees: disagreement.
        assert_eq!(
            c.compare_swapped(Some("ann"), Some("lee"), Some("bob"), Some("ann")),
            3
        );
        assert_eq!(
            c.compare_swapped(Some("ann"), Some("lee"), None, Some("ann")),
            3
        );
        assert_eq!(c.level_label(Level::Agreement(3)), "disagree");
        let own = FieldComparison::exact("a").swapped_with("a");
        assert!(own.validate().is_err());
    }

    #[test]
    fn rejects_bad_thresholds() {
        for t in [&[][..], &[0.9, 0.95], &[1.5], &[0.0]] {
            assert!(
                FieldComparison::jaro_winkler("f", t).validate().is_err(),
                "{t:?}"
            );
        }
        let c = FieldComparison::new("f", Comparator::Numeric { scale: 0.0 }, &[0.5]);
        assert!(c.validate().is_err());
    }
}
