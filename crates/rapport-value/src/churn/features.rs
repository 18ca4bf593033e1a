//! Turning customer features into numbers a model can use.
//!
//! Numeric columns are standardised with the mean and standard deviation learned on the
//! training rows (missing values become the training mean, i.e. 0 after standardising, and a
//! `name=missing` indicator column is added when training saw missing values). Categorical
//! columns are one-hot encoded over the levels seen in training; an unseen or missing level
//! encodes as all zeros, so scoring never fails on a new category.

use serde::{Deserialize, Serialize};

use super::ChurnError;

/// One feature value of one customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureValue {
    Number(f64),
    Category(String),
    Missing,
}

impl From<f64> for FeatureValue {
    fn from(v: f64) -> Self {
        FeatureValue::Number(v)
    }
}

impl From<&str> for FeatureValue {
    fn from(v: &str) -> Self {
        FeatureValue::Category(v.to_owned())
    }
}

impl<T: Into<FeatureValue>> From<Option<T>> for FeatureValue {
    fn from(v: Option<T>) -> Self {
        v.map_or(FeatureValue::Missing, Into::into)
    }
}

/// Whether a column holds numbers or category labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnKind {
    Numeric,
    Categorical,
}

/// A named input column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    pub kind: ColumnKind,
}

impl Column {
    pub fn numeric(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            kind: ColumnKind::Numeric,
        }
    }

    pub fn categorical(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            kind: ColumnKind::Categorical,
        }
    }
}

/// Mean and scale of one numeric column: `z = (x − mean) / scale`.
///
/// `scale` is the population standard deviation, or 1 for a constant column (so that
/// standardising never divides by zero and stays invertible).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ColumnStats {
    pub mean: f64,
    pub scale: f64,
}

impl ColumnStats {
    /// Learns mean and scale from the finite values; no finite value gives mean 0, scale 1.
    pub fn fit(values: impl IntoIterator<Item = f64>) -> Self {
        // Welford's update: stable for large values with small spread.
        let (mut n, mut mean, mut m2) = (0.0f64, 0.0f64, 0.0f64);
        for v in values.into_iter().filter(|v| v.is_finite()) {
            n += 1.0;
            let d = v - mean;
            mean += d / n;
            m2 += d * (v - mean);
        }
        if n == 0.0 {
            return Self {
                mean: 0.0,
                scale: 1.0,
            };
        }
        let sd = (m2 / n).sqrt();
        let scale = if sd.is_finite() && sd > 1e-12 * mean.abs().max(1.0) {
            sd
        } else {
            1.0
        };
        Self { mean, scale }
    }

    pub fn transform(&self, x: f64) -> f64 {
        (x - self.mean) / self.scale
    }

    pub fn inverse(&self, z: f64) -> f64 {
        z * self.scale + self.mean
    }
}

/// Column-wise standardisation of a numeric matrix (rows of equal length).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Standardizer {
    pub stats: Vec<ColumnStats>,
}

impl Standardizer {
    /// Learns one [`ColumnStats`] per column. Errors on ragged rows.
    pub fn fit(rows: &[Vec<f64>]) -> Result<Self, ChurnError> {
        let width = rows.first().map_or(0, Vec::len);
        if let Some(bad) = rows.iter().find(|r| r.len() != width) {
            return Err(ChurnError::LengthMismatch {
                expected: width,
                found: bad.len(),
            });
        }
        let stats = (0..width)
            .map(|j| ColumnStats::fit(rows.iter().map(|r| r[j])))
            .collect();
        Ok(Self { stats })
    }

    pub fn transform(&self, row: &[f64]) -> Result<Vec<f64>, ChurnError> {
        self.check(row)?;
        Ok(row
            .iter()
            .zip(&self.stats)
            .map(|(&x, s)| s.transform(x))
            .collect())
    }

    pub fn inverse(&self, row: &[f64]) -> Result<Vec<f64>, ChurnError> {
        self.check(row)?;
        Ok(row
            .iter()
            .zip(&self.stats)
            .map(|(&z, s)| s.inverse(z))
            .collect())
    }

    fn check(&self, row: &[f64]) -> Result<(), ChurnError> {
        if row.len() != self.stats.len() {
            return Err(ChurnError::LengthMismatch {
                expected: self.stats.len(),
                found: row.len(),
            });
        }
        Ok(())
    }
}

/// Options of the feature encoder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EncoderConfig {
    /// A categorical level seen fewer times than this in training is treated as unseen.
    pub min_category_count: usize,
}

impl Default for EncoderConfig {
    fn default() -> Self {
        Self {
            min_category_count: 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ColumnEncoding {
    Numeric {
        stats: ColumnStats,
        missing_indicator: bool,
    },
    Categorical {
        levels: Vec<String>,
    },
}

/// A dense row-major matrix of encoded features.
#[derive(Debug, Clone, PartialEq)]
pub struct DesignMatrix {
    pub n_rows: usize,
    pub n_cols: usize,
    pub data: Vec<f64>,
}

impl DesignMatrix {
    /// Checks that `data` holds `n_rows × n_cols` finite values.
    pub fn validate(&self) -> Result<(), ChurnError> {
        let expected = self
            .n_rows
            .checked_mul(self.n_cols)
            .ok_or(ChurnError::EmptyData)?;
        if self.data.len() != expected {
            return Err(ChurnError::LengthMismatch {
                expected,
                found: self.data.len(),
            });
        }
        if self.data.iter().any(|v| !v.is_finite()) {
            return Err(ChurnError::NonFinite("design matrix".into()));
        }
        Ok(())
    }

    /// Row `i`; panics past the last row (callers iterate `0..n_rows` of a validated matrix).
    pub fn row(&self, i: usize) -> &[f64] {
        &self.data[i * self.n_cols..(i + 1) * self.n_cols]
    }
}

/// Learned encoding of raw columns into model features (standardised numbers, one-hots).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureEncoder {
    columns: Vec<Column>,
    encodings: Vec<ColumnEncoding>,
    feature_names: Vec<String>,
}

fn check_row(columns: &[Column], row: &[FeatureValue]) -> Result<(), ChurnError> {
    if row.len() != columns.len() {
        return Err(ChurnError::LengthMismatch {
            expected: columns.len(),
            found: row.len(),
        });
    }
    for (c, v) in columns.iter().zip(row) {
        match (c.kind, v) {
            (_, FeatureValue::Missing) | (ColumnKind::Categorical, FeatureValue::Category(_)) => {}
            (ColumnKind::Numeric, FeatureValue::Number(x)) => {
                if !x.is_finite() {
                    return Err(ChurnError::NonFinite(c.name.clone()));
                }
            }
            _ => {
                return Err(ChurnError::TypeMismatch {
                    column: c.name.clone(),
                });
            }
        }
    }
    Ok(())
}

impl FeatureEncoder {
    /// Learns the encoding from training rows. Errors on a row of the wrong length, a value of
    /// the wrong kind for its column, a non-finite number or duplicate column names.
    pub fn fit(
        columns: &[Column],
        rows: &[Vec<FeatureValue>],
        config: &EncoderConfig,
    ) -> Result<Self, ChurnError> {
        for (i, c) in columns.iter().enumerate() {
            if columns[..i].iter().any(|d| d.name == c.name) {
                return Err(ChurnError::InvalidConfig(format!(
                    "duplicate column `{}`",
                    c.name
                )));
            }
        }
        for row in rows {
            check_row(columns, row)?;
        }
        let mut encodings = Vec::with_capacity(columns.len());
        let mut feature_names = Vec::new();
        for (j, c) in columns.iter().enumerate() {
            match c.kind {
                ColumnKind::Numeric => {
                    let values = rows.iter().filter_map(|r| match r[j] {
                        FeatureValue::Number(x) => Some(x),
                        _ => None,
                    });
                    let stats = ColumnStats::fit(values);
                    let missing_indicator =
                        rows.iter().any(|r| matches!(r[j], FeatureValue::Missing));
                    feature_names.push(c.name.clone());
                    if missing_indicator {
                        feature_names.push(format!("{}=missing", c.name));
                    }
                    encodings.push(ColumnEncoding::Numeric {
                        stats,
                        missing_indicator,
                    });
                }
                ColumnKind::Categorical => {
                    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
                    for r in rows {
                        if let FeatureValue::Category(s) = &r[j] {
                            *counts.entry(s.as_str()).or_default() += 1;
                        }
                    }
                    let levels: Vec<String> = counts
                        .into_iter()
                        .filter(|&(_, n)| n >= config.min_category_count.max(1))
                        .map(|(s, _)| s.to_owned())
                        .collect();
                    feature_names.extend(levels.iter().map(|l| format!("{}={l}", c.name)));
                    encodings.push(ColumnEncoding::Categorical { levels });
                }
            }
        }
        Ok(Self {
            columns: columns.to_vec(),
            encodings,
            feature_names,
        })
    }

    /// The input columns this encoder expects, in order.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// Names of the encoded features (`column`, `column=missing`, `column=level`).
    pub fn feature_names(&self) -> &[String] {
        &self.feature_names
    }

    pub fn n_features(&self) -> usize {
        self.feature_names.len()
    }

    /// Encodes one row, appending to `out`.
    pub fn encode_into(&self, row: &[FeatureValue], out: &mut Vec<f64>) -> Result<(), ChurnError> {
        check_row(&self.columns, row)?;
        for (enc, v) in self.encodings.iter().zip(row) {
            match enc {
                ColumnEncoding::Numeric {
                    stats,
                    missing_indicator,
                } => {
                    let (z, missing) = match v {
                        FeatureValue::Number(x) => (stats.transform(*x), 0.0),
                        _ => (0.0, 1.0),
                    };
                    out.push(z);
                    if *missing_indicator {
                        out.push(missing);
                    }
                }
                ColumnEncoding::Categorical { levels } => {
                    let start = out.len();
                    out.resize(start + levels.len(), 0.0);
                    if let FeatureValue::Category(s) = v
                        && let Ok(k) = levels.binary_search(s)
                    {
                        out[start + k] = 1.0;
                    }
                }
            }
        }
        Ok(())
    }

    /// Encodes one row.
    pub fn encode(&self, row: &[FeatureValue]) -> Result<Vec<f64>, ChurnError> {
        let mut out = Vec::with_capacity(self.n_features());
        self.encode_into(row, &mut out)?;
        Ok(out)
    }

    /// Encodes many rows into a matrix.
    pub fn encode_all(&self, rows: &[Vec<FeatureValue>]) -> Result<DesignMatrix, ChurnError> {
        let mut data = Vec::with_capacity(rows.len() * self.n_features());
        for r in rows {
            self.encode_into(r, &mut data)?;
        }
        Ok(DesignMatrix {
            n_rows: rows.len(),
            n_cols: self.n_features(),
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols() -> Vec<Column> {
        vec![Column::numeric("tenure"), Column::categorical("plan")]
    }

    #[test]
    fn encodes_numbers_categories_missing_and_unseen() {
        let rows = vec![
            vec![1.0.into(), "basic".into()],
            vec![3.0.into(), "pro".into()],
            vec![FeatureValue::Missing, "basic".into()],
        ];
        let enc = FeatureEncoder::fit(&cols(), &rows, &EncoderConfig::default()).unwrap();
        assert_eq!(
            enc.feature_names(),
            ["tenure", "tenure=missing", "plan=basic", "plan=pro"]
        );
        assert_eq!(enc.encode(&rows[0]).unwrap(), vec![-1.0, 0.0, 1.0, 0.0]);
        assert_eq!(enc.encode(&rows[1]).unwrap(), vec![1.0, 0.0, 0.0, 1.0]);
        assert_eq!(enc.encode(&rows[2]).unwrap(), vec![0.0, 1.0, 1.0, 0.0]);
        // Unseen level: all zeros, no error.
        assert_eq!(
            enc.encode(&[2.0.into(), "enterprise".into()]).unwrap(),
            vec![0.0, 0.0, 0.0, 0.0]
        );
    }

    #[test]
    fn rejects_bad_rows() {
        let enc = FeatureEncoder::fit(&cols(), &[], &EncoderConfig::default()).unwrap();
        assert!(matches!(
            enc.encode(&[1.0.into()]),
            Err(ChurnError::LengthMismatch { .. })
        ));
        assert!(matches!(
            enc.encode(&["x".into(), "basic".into()]),
            Err(ChurnError::TypeMismatch { .. })
        ));
        assert!(matches!(
            enc.encode(&[f64::INFINITY.into(), "basic".into()]),
            Err(ChurnError::NonFinite(_))
        ));
        let dup = [Column::numeric("a"), Column::categorical("a")];
        assert!(FeatureEncoder::fit(&dup, &[], &EncoderConfig::default()).is_err());
    }

    #[test]
    fn rare_levels_are_unseen() {
        let rows: Vec<Vec<FeatureValue>> = ["a", "a", "b"]
            .iter()
            .map(|&s| vec![1.0.into(), s.into()])
            .collect();
        let cfg = EncoderConfig {
            min_category_count: 2,
        };
        let enc = FeatureEncoder::fit(&cols(), &rows, &cfg).unwrap();
        assert_eq!(enc.feature_names(), ["tenure", "plan=a"]);
    }

    #[test]
    fn standardizer_learns_mean_and_scale() {
        let s = Standardizer::fit(&[vec![1.0, 5.0], vec![3.0, 5.0]]).unwrap();
        assert_eq!(
            s.stats[0],
            ColumnStats {
                mean: 2.0,
                scale: 1.0
            }
        );
        assert_eq!(
            s.stats[1],
            ColumnStats {
                mean: 5.0,
                scale: 1.0
            }
        );
        assert_eq!(s.transform(&[3.0, 5.0]).unwrap(), vec![1.0, 0.0]);
        assert!(Standardizer::fit(&[vec![1.0], vec![1.0, 2.0]]).is_err());
    }
}
