//! Deterministic simulation of customer behaviour for synthetic data (the CLI's
//! demo dataset, benchmarks): a small seeded RNG and the BG/NBD purchase process
//! (DOMAIN §3). Dependency-free, so the same seed gives the same data everywhere.

/// xorshift64*: deterministic, fast, and good enough for simulation.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // A zero state would stay zero.
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15 | 1)
    }

    /// Uniform in (0, 1).
    pub fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        ((self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Uniform integer in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.uniform() * n as f64) as u64).min(n.saturating_sub(1))
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.uniform() < p
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }

    /// Exponential with the given rate.
    pub fn exponential(&mut self, rate: f64) -> f64 {
        -self.uniform().ln() / rate.max(1e-12)
    }

    /// Gamma(shape, 1), Marsaglia-Tsang (boosted for shape < 1).
    pub fn gamma(&mut self, shape: f64) -> f64 {
        if shape < 1.0 {
            return self.gamma(shape + 1.0) * self.uniform().powf(1.0 / shape);
        }
        let d = shape - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.normal();
            let v = (1.0 + c * x).powi(3);
            if v > 0.0 && self.uniform().ln() < 0.5 * x * x + d - d * v + d * v.ln() {
                return d * v;
            }
        }
    }

    pub fn beta(&mut self, a: f64, b: f64) -> f64 {
        let x = self.gamma(a);
        x / (x + self.gamma(b))
    }
}

/// BG/NBD population parameters (Fader, Hardie & Lee 2005).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BgNbd {
    pub r: f64,
    pub alpha: f64,
    pub a: f64,
    pub b: f64,
}

/// The CDNOW estimates, in weeks.
pub const CDNOW: BgNbd = BgNbd {
    r: 0.243,
    alpha: 4.414,
    a: 0.793,
    b: 2.426,
};

/// One customer's purchase times in weeks from its first purchase (always 0.0),
/// observed for `t_weeks`: purchases at rate λ ~ Gamma(r, α); after each repeat
/// purchase the customer drops out with probability p ~ Beta(a, b).
pub fn purchase_weeks(rng: &mut Rng, m: &BgNbd, t_weeks: f64) -> Vec<f64> {
    let lambda = rng.gamma(m.r) / m.alpha;
    let p = rng.beta(m.a, m.b);
    let mut weeks = vec![0.0];
    let mut now = 0.0;
    loop {
        now += rng.exponential(lambda);
        if now > t_weeks {
            return weeks;
        }
        weeks.push(now);
        if rng.chance(p) {
            return weeks;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_customers() {
        let draw = |seed| {
            let mut rng = Rng::new(seed);
            (0..50)
                .map(|_| purchase_weeks(&mut rng, &CDNOW, 39.0))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }

    #[test]
    fn draws_have_the_moments_of_their_distributions() {
        let mut rng = Rng::new(1);
        let n = 200_000;
        let mean = |f: &mut dyn FnMut() -> f64| (0..n).map(|_| f()).sum::<f64>() / n as f64;
        // Gamma(k, 1) has mean k; Beta(a, b) has mean a / (a + b).
        assert!((mean(&mut || rng.gamma(0.243)) - 0.243).abs() < 0.01);
        assert!((mean(&mut || rng.gamma(3.0)) - 3.0).abs() < 0.03);
        assert!((mean(&mut || rng.beta(0.793, 2.426)) - 0.793 / 3.219).abs() < 0.005);
    }

    #[test]
    fn the_cdnow_process_looks_like_cdnow() {
        // CDNOW: over 39 weeks about 60% of the cohort never buys again, and
        // repeat buyers average about 1.5 repeat purchases.
        let mut rng = Rng::new(3);
        let customers: Vec<Vec<f64>> = (0..20_000)
            .map(|_| purchase_weeks(&mut rng, &CDNOW, 39.0))
            .collect();
        let zero = customers.iter().filter(|w| w.len() == 1).count() as f64 / 20_000.0;
        assert!((0.5..0.7).contains(&zero), "share without a repeat: {zero}");
        assert!(
            customers
                .iter()
                .all(|w| w[0] == 0.0 && w.iter().all(|t| *t <= 39.0))
        );
    }
}
