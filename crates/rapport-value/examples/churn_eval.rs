//! Trains Rapport's churn model on a CSV file and prints the held-out ROC AUC.
//!
//! ```text
//! cargo run --release -p rapport-value --example churn_eval -- data.csv \
//!     [--label churn] [--positive Yes] [--ignore rownames] [--seed 42] [--l2 1.0]
//!     [--model logistic|gbt] [--trees 200] [--depth 3] [--learning-rate 0.05]
//! ```
//!
//! Every column except the label and the ignored ones is a feature: numeric when all its
//! non-empty values parse as numbers, categorical otherwise. Empty cells and `NA` are missing.
//! The split is stratified, 80% train / 20% test, seeded.

use std::process::ExitCode;

use rapport_value::churn::{
    ChurnAlgorithm, ChurnConfig, Column, Dataset, FeatureValue, GbtConfig, LogisticConfig,
    train_and_evaluate,
};

struct Args {
    path: String,
    label: String,
    positive: String,
    ignore: Vec<String>,
    seed: u64,
    l2: f64,
    model: String,
    gbt: GbtConfig,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mut args = Args {
        path: String::new(),
        label: "churn".into(),
        positive: "Yes".into(),
        ignore: vec!["rownames".into()],
        seed: 42,
        l2: 1.0,
        model: "logistic".into(),
        gbt: GbtConfig::default(),
    };
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--label" => args.label = value("--label")?,
            "--positive" => args.positive = value("--positive")?,
            "--ignore" => args.ignore.push(value("--ignore")?),
            "--seed" => {
                args.seed = value("--seed")?
                    .parse()
                    .map_err(|e| format!("--seed: {e}"))?
            }
            "--l2" => args.l2 = value("--l2")?.parse().map_err(|e| format!("--l2: {e}"))?,
            "--model" => args.model = value("--model")?,
            "--trees" => {
                args.gbt.n_trees = value("--trees")?
                    .parse()
                    .map_err(|e| format!("--trees: {e}"))?
            }
            "--depth" => {
                args.gbt.max_depth = value("--depth")?
                    .parse()
                    .map_err(|e| format!("--depth: {e}"))?
            }
            "--learning-rate" => {
                args.gbt.learning_rate = value("--learning-rate")?
                    .parse()
                    .map_err(|e| format!("--learning-rate: {e}"))?
            }
            _ if a.starts_with("--") => return Err(format!("unknown option {a}")),
            _ => args.path = a,
        }
    }
    if args.model != "logistic" && args.model != "gbt" {
        return Err(format!(
            "--model must be logistic or gbt, got {}",
            args.model
        ));
    }
    if args.path.is_empty() {
        return Err(
            "usage: churn_eval <file.csv> [--label churn] [--positive Yes] \
                    [--ignore col] [--seed 42] [--l2 1.0] [--model logistic|gbt] \
                    [--trees 200] [--depth 3] [--learning-rate 0.05]"
                .into(),
        );
    }
    Ok(args)
}

fn is_missing(s: &str) -> bool {
    let s = s.trim();
    s.is_empty() || s.eq_ignore_ascii_case("na") || s.eq_ignore_ascii_case("nan")
}

fn load(args: &Args) -> Result<Dataset, Box<dyn std::error::Error>> {
    let mut reader = csv::Reader::from_path(&args.path)?;
    let headers: Vec<String> = reader.headers()?.iter().map(str::to_owned).collect();
    let label_at = headers
        .iter()
        .position(|h| *h == args.label)
        .ok_or(format!("no column `{}`", args.label))?;
    let records: Vec<csv::StringRecord> = reader.records().collect::<Result<_, _>>()?;
    let feature_at: Vec<usize> = (0..headers.len())
        .filter(|&j| j != label_at && !args.ignore.contains(&headers[j]))
        .collect();
    let columns: Vec<Column> = feature_at
        .iter()
        .map(|&j| {
            let numeric = records
                .iter()
                .map(|r| r.get(j).unwrap_or(""))
                .filter(|s| !is_missing(s))
                .all(|s| s.trim().parse::<f64>().is_ok());
            if numeric {
                Column::numeric(&headers[j])
            } else {
                Column::categorical(&headers[j])
            }
        })
        .collect();
    let mut rows = Vec::with_capacity(records.len());
    let mut labels = Vec::with_capacity(records.len());
    for r in &records {
        labels.push(r.get(label_at).unwrap_or("").trim() == args.positive);
        let row = feature_at
            .iter()
            .zip(&columns)
            .map(|(&j, c)| {
                let s = r.get(j).unwrap_or("");
                if is_missing(s) {
                    FeatureValue::Missing
                } else if c.kind == rapport_value::churn::ColumnKind::Numeric {
                    FeatureValue::Number(s.trim().parse().unwrap_or(f64::NAN))
                } else {
                    FeatureValue::Category(s.trim().to_owned())
                }
            })
            .collect();
        rows.push(row);
    }
    Ok(Dataset::new(columns, rows, labels)?)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let data = match load(&args) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("cannot read {}: {e}", args.path);
            return ExitCode::FAILURE;
        }
    };
    let config = ChurnConfig {
        test_fraction: 0.2,
        seed: args.seed,
        algorithm: if args.model == "gbt" {
            ChurnAlgorithm::GradientBoosting(args.gbt.clone())
        } else {
            ChurnAlgorithm::Logistic(LogisticConfig {
                l2: args.l2,
                ..Default::default()
            })
        },
        ..Default::default()
    };
    let (_, report) = match train_and_evaluate(&data, &config) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("training failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "rows: {} train ({} churned), {} test ({} churned)",
        report.n_train, report.positives_train, report.n_test, report.positives_test
    );
    println!(
        "model: {} ({} iterations, converged: {})",
        report.algorithm, report.iterations, report.converged
    );
    println!("top features:");
    for f in report.feature_weights.iter().take(10) {
        println!("  {:>+8.3}  {}", f.weight, f.feature);
    }
    println!(
        "train AUC: {:.4}  log-loss: {:.4}",
        report.auc_train, report.log_loss_train
    );
    println!("held-out log-loss: {:.4}", report.log_loss_test);
    println!("held-out AUC: {:.4}", report.auc_test);
    ExitCode::SUCCESS
}
