//! Randomness: one ChaCha8 stream per purpose, and the few draws the model makes from it. They
//! use only `gen::<f64>()`, whose output rand documents as stable, so the output does not depend
//! on rand's distribution algorithms.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub(super) fn unit(r: &mut ChaCha8Rng) -> f64 {
    r.gen::<f64>()
}

pub(super) fn uniform(r: &mut ChaCha8Rng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * unit(r)
}

/// An integer in `lo..hi`.
pub(super) fn range(r: &mut ChaCha8Rng, lo: i64, hi: i64) -> i64 {
    lo + ((hi - lo) as f64 * unit(r)) as i64
}

pub(super) fn chance(r: &mut ChaCha8Rng, p: f64) -> bool {
    unit(r) < p
}

pub(super) fn normal(r: &mut ChaCha8Rng) -> f64 {
    let u1 = 1.0 - unit(r);
    let u2 = unit(r);
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

pub(super) fn lognormal(r: &mut ChaCha8Rng, median: f64, sigma: f64) -> f64 {
    median * (sigma * normal(r)).exp()
}

pub(super) fn poisson(r: &mut ChaCha8Rng, lambda: f64) -> u32 {
    if lambda <= 0.0 {
        return 0;
    }
    if lambda > 30.0 {
        return (lambda + lambda.sqrt() * normal(r)).round().max(0.0) as u32;
    }
    let limit = (-lambda).exp();
    let mut k = 0;
    let mut p = unit(r);
    while p > limit {
        k += 1;
        p *= unit(r);
    }
    k
}

pub(super) fn pick<T: Copy>(r: &mut ChaCha8Rng, items: &[T]) -> T {
    items[range(r, 0, items.len() as i64) as usize]
}

pub(super) fn pick_weighted<T: Copy>(r: &mut ChaCha8Rng, items: &[(T, f64)]) -> T {
    let total: f64 = items.iter().map(|(_, w)| w).sum();
    let mut x = unit(r) * total;
    for &(item, w) in items {
        if x < w {
            return item;
        }
        x -= w;
    }
    items[items.len() - 1].0
}

pub(super) fn rng_for(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}
