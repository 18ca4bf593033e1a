//! Simulation from the purchase models, for benchmarks, property tests and for users who want
//! to see what a fitted model implies (e.g. a synthetic cohort). The random source is passed
//! in, so a seeded generator gives reproducible data.

use rand::Rng;
use rand_distr::{Beta, Distribution, Exp, Gamma};

use super::bgnbd::BgNbd;
use super::error::{ClvError, check_horizon};
use super::pareto::ParetoNbd;
use super::rfm::RfmSummary;

fn gamma<R: Rng + ?Sized>(shape: f64, scale: f64, rng: &mut R) -> Result<f64, ClvError> {
    Gamma::new(shape, scale)
        .map(|g| g.sample(rng))
        .map_err(|_| ClvError::Numerical("invalid Gamma parameters"))
}

/// Purchase times of a Poisson process with rate `rate` on (0, end], as (count, last time).
fn poisson_process<R: Rng + ?Sized>(rate: f64, end: f64, rng: &mut R) -> (u32, f64) {
    if rate.is_nan() || rate <= 0.0 || !rate.is_finite() {
        return (0, 0.0);
    }
    let Ok(wait) = Exp::new(rate) else {
        return (0, 0.0);
    };
    let (mut n, mut t, mut last) = (0u32, 0.0, 0.0);
    loop {
        t += wait.sample(rng);
        if t > end {
            return (n, last);
        }
        n = n.saturating_add(1);
        last = t;
    }
}

/// Simulates one BG/NBD customer observed for `age` time units after their first purchase.
pub fn simulate_bgnbd<R: Rng + ?Sized>(
    m: &BgNbd,
    age: f64,
    rng: &mut R,
) -> Result<RfmSummary, ClvError> {
    m.validate()?;
    check_horizon("age", age)?;
    let lambda = gamma(m.r, 1.0 / m.alpha, rng)?;
    let p = Beta::new(m.a, m.b)
        .map_err(|_| ClvError::Numerical("invalid Beta parameters"))?
        .sample(rng);
    let mut s = RfmSummary::new(0, 0.0, age);
    if lambda.is_nan() || lambda <= 0.0 {
        return Ok(s);
    }
    let Ok(wait) = Exp::new(lambda) else {
        return Ok(s);
    };
    let mut t = 0.0;
    loop {
        t += wait.sample(rng);
        if t > age {
            return Ok(s);
        }
        s.frequency += 1;
        s.recency = t;
        if rng.r#gen::<f64>() < p {
            return Ok(s);
        }
    }
}

/// Simulates one Pareto/NBD customer observed for `age` time units after their first purchase.
pub fn simulate_pareto_nbd<R: Rng + ?Sized>(
    m: &ParetoNbd,
    age: f64,
    rng: &mut R,
) -> Result<RfmSummary, ClvError> {
    m.validate()?;
    check_horizon("age", age)?;
    let lambda = gamma(m.r, 1.0 / m.alpha, rng)?;
    let mu = gamma(m.s, 1.0 / m.beta, rng)?;
    let lifetime = if mu > 0.0 {
        Exp::new(mu).map(|e| e.sample(rng)).unwrap_or(f64::INFINITY)
    } else {
        f64::INFINITY
    };
    let (n, last) = poisson_process(lambda, lifetime.min(age), rng);
    Ok(RfmSummary::new(n, if n == 0 { 0.0 } else { last }, age))
}
