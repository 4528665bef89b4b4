//! Shifted-beta-geometric (sBG) retention model for contractual settings (Fader &
//! Hardie 2007, "How to project customer retention"): at each renewal a customer
//! leaves with her own probability θ, and θ ~ Beta(α, β) across customers. The
//! riskier customers leave first, so a cohort's retention rate rises with tenure
//! even though no one's individual probability changes; projecting a constant
//! rate would understate the long tail.
//!
//! Periods are renewal periods: T is the period in which a customer is lost
//! (T = 1: she did not renew at the end of her first period), S(t) = P(T > t).

use std::collections::BTreeMap;

use super::FitError;
use super::optimize::{bfgs, nelder_mead};

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sbg {
    pub alpha: f64,
    pub beta: f64,
}

/// Parameters with the maximised log-likelihood (summed over customers).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SbgFit {
    pub params: Sbg,
    pub log_likelihood: f64,
}

/// One customer's contract in period indices (years, months, ...): acquired in
/// period `acquired`, no longer a customer from period `ended` on (None while
/// still active).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tenure {
    pub acquired: u32,
    pub ended: Option<u32>,
}

impl Sbg {
    /// P(T = t), the chance a new customer is lost in period t (0 for t = 0, as
    /// everyone starts as a customer). Equation 7 of the paper, by its recursion,
    /// which needs no gamma functions.
    pub fn churn_probability(&self, t: u32) -> f64 {
        let Sbg { alpha, beta } = *self;
        if t == 0 {
            return 0.0;
        }
        let mut p = alpha / (alpha + beta);
        for k in 2..=t {
            let k = f64::from(k);
            p *= (beta + k - 2.0) / (alpha + beta + k - 1.0);
        }
        p
    }

    /// S(t) = P(T > t), the share of a cohort still active after t periods
    /// (S(0) = 1).
    pub fn survival(&self, t: u32) -> f64 {
        let Sbg { alpha, beta } = *self;
        let mut s = 1.0;
        for k in 1..=t {
            let k = f64::from(k);
            s *= (beta + k - 1.0) / (alpha + beta + k - 1.0);
        }
        s
    }

    /// r(t) = S(t) / S(t − 1), the share of those active in period t − 1 who
    /// renew for period t; it rises with t because the ones left are the loyal
    /// ones. NaN for t = 0: there is no period before the first.
    pub fn retention_rate(&self, t: u32) -> f64 {
        if t == 0 {
            return f64::NAN;
        }
        let t = f64::from(t);
        (self.beta + t - 1.0) / (self.alpha + self.beta + t - 1.0)
    }

    /// (S(t), r(t)) for t = 1..=periods, in one pass.
    pub fn project(&self, periods: u32) -> Vec<(f64, f64)> {
        let mut s = 1.0;
        (1..=periods)
            .map(|t| {
                let r = self.retention_rate(t);
                s *= r;
                (s, r)
            })
            .collect()
    }

    /// Expected survivors of a cohort of `cohort` customers, in the layout `fit`
    /// takes: index 0 is the cohort itself, index t the customers left after t
    /// periods, up to t = periods. Puts the fitted curve beside the observed one.
    pub fn expected_survivors(&self, cohort: f64, periods: u32) -> Vec<f64> {
        std::iter::once(cohort)
            .chain(self.project(periods).into_iter().map(|(s, _)| cohort * s))
            .collect()
    }

    /// Discounted expected residual lifetime (Fader & Hardie 2010, "Customer-base
    /// valuation in a contractual setting", equation 6): the expected number of
    /// future renewals, each discounted at `discount` per period, of a customer
    /// in her `period`-th contract period, i.e. who has renewed `period` − 1 times
    /// and is about to make her `period`-th renewal decision; the next renewal is
    /// not discounted. Times the margin per period it is her residual value;
    /// `1 + derl(d, 1)` is the discounted expected lifetime of a new customer.
    ///
    /// DERL = (β + n − 1)/(α + β + n − 1) · ₂F₁(1, β + n; α + β + n; 1/(1 + d)),
    /// equal to Σ_{t ≥ n} S(t)/S(n − 1) · (1 + d)^−(t − n).
    ///
    /// None when the discount rate is not positive and finite (without
    /// discounting the sum need not converge), when `period` is 0, or when the
    /// rate is so small (below about 5e-7) that the series would need more than
    /// 10⁸ terms.
    pub fn derl(&self, discount: f64, period: u32) -> Option<f64> {
        if !(discount > 0.0 && discount.is_finite()) || period == 0 {
            return None;
        }
        let Sbg { alpha, beta } = *self;
        let n = f64::from(period);
        let lead = (beta + n - 1.0) / (alpha + beta + n - 1.0);
        hyp2f1_unit_a(beta + n, alpha + beta + n, 1.0 / (1.0 + discount)).map(|f| lead * f)
    }

    /// Undiscounted expected residual lifetime, Σ_{t ≥ n} S(t)/S(n − 1) =
    /// (β + n − 1)/(α − 1), for a customer in her `period`-th contract period
    /// (as in `derl`). None when α ≤ 1: then the heavy tail of loyal customers
    /// makes the expectation infinite. None too for `period` 0.
    pub fn expected_residual_lifetime(&self, period: u32) -> Option<f64> {
        if self.alpha <= 1.0 || period == 0 {
            return None;
        }
        Some((self.beta + f64::from(period) - 1.0) / (self.alpha - 1.0))
    }
}

/// ₂F₁(1, b; c; z) for 0 < b < c and 0 ≤ z < 1, by its power series with a bound
/// on the tail rather than a test on the last term: the ratio of consecutive
/// terms, (b + k)/(c + k) · z, stays below z, so everything after a term t is at
/// most t · z/(1 − z). Near z = 1 (small discount rates) that bound is far larger
/// than the term, and stopping on the term alone would cut off most of the sum.
/// None when 10⁸ terms do not reach the bound.
fn hyp2f1_unit_a(b: f64, c: f64, z: f64) -> Option<f64> {
    const MAX_TERMS: u32 = 100_000_000;
    let tail_factor = z / (1.0 - z);
    let (mut term, mut sum, mut carry) = (1.0f64, 1.0f64, 0.0f64);
    for k in 0..MAX_TERMS {
        let k = f64::from(k);
        term *= (b + k) / (c + k) * z;
        // Compensated (Neumaier) summation: up to 10⁸ small terms are added to
        // a large sum, and plain addition would lose their low digits.
        let next = sum + term;
        carry += if sum.abs() >= term.abs() {
            (sum - next) + term
        } else {
            (term - next) + sum
        };
        sum = next;
        if term * tail_factor <= f64::EPSILON * (sum + carry) {
            return Some(sum + carry);
        }
    }
    None
}

/// Customers lost in each period and still active at each horizon, summed over
/// cohorts: all the likelihood needs, however many cohorts there are.
struct Counts {
    /// `lost[t - 1]`: lost in period t.
    lost: Vec<f64>,
    /// `active[t - 1]`: still active at the end of observation, after t periods.
    active: Vec<f64>,
    customers: f64,
}

fn validate(cohorts: &[Vec<f64>]) -> Result<Counts, FitError> {
    if cohorts.is_empty() {
        return Err(FitError::Empty);
    }
    let horizon = cohorts.iter().map(|c| c.len()).max().unwrap_or(0);
    let mut counts = Counts {
        lost: vec![0.0; horizon.saturating_sub(1)],
        active: vec![0.0; horizon.saturating_sub(1)],
        customers: 0.0,
    };
    for (row, survivors) in cohorts.iter().enumerate() {
        let invalid = |reason: String| Err(FitError::Invalid { row, reason });
        let Some(&size) = survivors.first() else {
            return invalid("no survivor counts, not even the cohort size".into());
        };
        if !(size > 0.0 && size.is_finite()) {
            return invalid(format!("cohort size {size}: need a positive count"));
        }
        for (t, pair) in survivors.windows(2).enumerate() {
            let (before, after) = (pair[0], pair[1]);
            if !(after >= 0.0 && after.is_finite()) {
                return invalid(format!(
                    "{after} survivors after period {}: need a count ≥ 0",
                    t + 1
                ));
            }
            if after > before {
                return invalid(format!(
                    "survivors rise from {before} to {after} in period {}: a cohort can only shrink",
                    t + 1
                ));
            }
            counts.lost[t] += before - after;
        }
        let periods = survivors.len() - 1;
        if periods > 0 {
            counts.active[periods - 1] += survivors[periods];
        }
        counts.customers += size;
    }
    if counts.lost.len() < 2 {
        // Every (α, β) with the same α/(α + β) fits one period equally well.
        return Err(FitError::Invalid {
            row: 0,
            reason: "no cohort observed for two periods: one period gives the mean churn \
                     rate but not its spread across customers"
                .into(),
        });
    }
    if counts.lost.iter().all(|&l| l == 0.0) {
        // ln L only grows as retention tends to 1: there is no maximum to find.
        return Err(FitError::NoConvergence(
            "no customer was lost, so churn cannot be estimated".into(),
        ));
    }
    Ok(counts)
}

impl Counts {
    /// ln L and its gradient in (ln α, ln β). Equation B1 of the paper, summed
    /// over cohorts, walking the recursions once up to the longest horizon:
    /// P(T = t) = S(t − 1) · α/(α + β + t − 1) and
    /// S(t) = S(t − 1) · (β + t − 1)/(α + β + t − 1), kept as logarithms with
    /// their derivatives.
    fn log_likelihood_and_gradient(&self, m: &Sbg) -> (f64, [f64; 2]) {
        let Sbg { alpha, beta } = *m;
        // ln S(t − 1) and its partial derivatives in α and β.
        let (mut ln_s, mut ds_a, mut ds_b) = (0.0, 0.0, 0.0);
        let (mut ll, mut ga, mut gb) = (0.0, 0.0, 0.0);
        for (i, (&lost, &active)) in self.lost.iter().zip(&self.active).enumerate() {
            let stay = beta + i as f64; // β + t − 1
            let all = alpha + stay; // α + β + t − 1
            if lost > 0.0 {
                // ln(α/(α + β + t − 1)) = −ln(1 + (β + t − 1)/α)
                ll += lost * (ln_s - (stay / alpha).ln_1p());
                ga += lost * (ds_a + 1.0 / alpha - 1.0 / all);
                gb += lost * (ds_b - 1.0 / all);
            }
            // ln((β + t − 1)/(α + β + t − 1)) = −ln(1 + α/(β + t − 1))
            ln_s -= (alpha / stay).ln_1p();
            ds_a -= 1.0 / all;
            ds_b += 1.0 / stay - 1.0 / all;
            if active > 0.0 {
                ll += active * ln_s;
                ga += active * ds_a;
                gb += active * ds_b;
            }
        }
        // Chain rule to the log scale: ∂/∂ln θ = θ ∂/∂θ.
        (ll, [ga * alpha, gb * beta])
    }
}

/// Maximum-likelihood fit on one cohort's survivor curve: `survivors[0]` is the
/// cohort's size, `survivors[t]` the customers still active after t periods.
/// Counts need not be whole (weighted customers). Refused with
/// `FitError::Invalid` (row 0) unless there are at least three counts (one
/// period shows how many leave, not how unequal customers are), the first
/// positive, none negative and none above the one before.
pub fn fit(survivors: &[f64]) -> Result<SbgFit, FitError> {
    if survivors.len() < 3 {
        return Err(FitError::Invalid {
            row: 0,
            reason: format!(
                "{} survivor counts: need the cohort size and at least two periods",
                survivors.len()
            ),
        });
    }
    fit_cohorts(&[survivors.to_vec()])
}

/// Joint maximum-likelihood fit on several cohorts sharing one (α, β), e.g. the
/// yearly acquisition cohorts of one product, each observed for as long as it has
/// existed: older cohorts inform the later periods, all of them the early ones.
/// Each curve is laid out as in `fit`; short curves are allowed (one with only
/// its size, acquired this period, adds nothing), but at least one must span two
/// periods.
/// `FitError::Invalid`'s row is the cohort's index.
pub fn fit_cohorts(cohorts: &[Vec<f64>]) -> Result<SbgFit, FitError> {
    let counts = validate(cohorts)?;
    let model = |p: &[f64]| Sbg {
        alpha: p[0].exp(),
        beta: p[1].exp(),
    };
    // Per customer, so the gradient's scale does not grow with the cohorts.
    let per = 1.0 / counts.customers;
    let neg_fg = |p: &[f64]| -> (f64, Vec<f64>) {
        let (ll, g) = counts.log_likelihood_and_gradient(&model(p));
        (-ll * per, g.iter().map(|v| -v * per).collect())
    };
    let found = bfgs(neg_fg, &[0.0; 2], 500, 1e-15)
        .filter(|(p, v)| v.is_finite() && p.iter().all(|x| x.is_finite() && x.abs() < 30.0));
    let (p, v) = match found {
        Some((p, v)) => (p, v / per),
        None => {
            let neg_ll = |p: &[f64]| -> f64 {
                let (ll, _) = counts.log_likelihood_and_gradient(&model(p));
                if ll.is_finite() { -ll } else { f64::MAX }
            };
            // Two rounds: restart from the first optimum to escape a collapsed simplex.
            let (p, _) = nelder_mead(neg_ll, &[0.0; 2], 1.0, 20_000, 1e-14);
            nelder_mead(neg_ll, &p, 0.1, 20_000, 1e-15)
        }
    };
    if !v.is_finite() || v == f64::MAX {
        return Err(FitError::NoConvergence(
            "log-likelihood is not finite".into(),
        ));
    }
    Ok(SbgFit {
        params: model(&p),
        log_likelihood: -v,
    })
}

/// Survivor curves per acquisition cohort, keyed by the period acquired in, from
/// per-customer tenures as of period `current`; each curve is laid out as `fit`
/// takes it and runs to `current` (`current − acquired + 1` counts).
///
/// Convention: a customer acquired in period a whose relationship ended in
/// period k was active through period k − 1 and counts as lost in period k − a
/// after acquisition (she did not make her (k − a)-th renewal): she is in
/// survivors[0..k − a] and not after. One who ended in the period she was
/// acquired in counts as lost in period 1 too, the first the model has.
///
/// `FitError::Empty` for no customers; `FitError::Invalid` (row: the customer's
/// index) for an acquisition after `current`, or an end before the acquisition
/// or after `current`.
pub fn cohort_survivors(
    customers: &[Tenure],
    current: u32,
) -> Result<BTreeMap<u32, Vec<f64>>, FitError> {
    if customers.is_empty() {
        return Err(FitError::Empty);
    }
    // Per cohort: customers lost in each period after acquisition (index 0 the
    // whole cohort acquired, the rest losses by period).
    let mut tallies: BTreeMap<u32, Vec<f64>> = BTreeMap::new();
    for (row, c) in customers.iter().enumerate() {
        let invalid = |reason: String| Err(FitError::Invalid { row, reason });
        if c.acquired > current {
            return invalid(format!(
                "acquired in period {} after the current period {current}",
                c.acquired
            ));
        }
        let span = (current - c.acquired) as usize;
        let tally = tallies
            .entry(c.acquired)
            .or_insert_with(|| vec![0.0; span + 1]);
        tally[0] += 1.0;
        if let Some(ended) = c.ended {
            if ended < c.acquired || ended > current {
                return invalid(format!(
                    "ended in period {ended}: need it between the acquisition period {} and the current period {current}",
                    c.acquired
                ));
            }
            let lost_in = ((ended - c.acquired) as usize).max(1);
            // A loss in a period not yet over for the cohort (only possible in
            // the acquisition period itself) is not counted yet.
            if lost_in <= span {
                tally[lost_in] += 1.0;
            }
        }
    }
    for tally in tallies.values_mut() {
        for t in 1..tally.len() {
            tally[t] = tally[t - 1] - tally[t];
        }
    }
    Ok(tallies)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::models::special::ln_gamma;

    /// Fader & Hardie (2007), Table 1: survivors of 1,000 customers over 12
    /// years; the paper fits the first 7 years (8 counts) and holds out the rest.
    const REGULAR: [f64; 13] = [
        1000.0, 631.0, 468.0, 382.0, 326.0, 289.0, 262.0, 241.0, 223.0, 207.0, 194.0, 183.0, 173.0,
    ];
    const HIGH_END: [f64; 13] = [
        1000.0, 869.0, 743.0, 653.0, 593.0, 551.0, 517.0, 491.0, 468.0, 445.0, 427.0, 409.0, 394.0,
    ];

    /// S(t) = B(α, β + t)/B(α, β), the closed form, independent of the
    /// recursions under test.
    fn survival_closed_form(m: &Sbg, t: f64) -> f64 {
        let Sbg { alpha, beta } = *m;
        (ln_gamma(beta + t) - ln_gamma(alpha + beta + t) - ln_gamma(beta) + ln_gamma(alpha + beta))
            .exp()
    }

    #[test]
    fn reproduces_the_published_estimates() {
        for (data, alpha, beta, name) in [
            (&REGULAR, 0.704, 1.182, "regular"),
            (&HIGH_END, 0.668, 3.806, "high end"),
        ] {
            let f = fit(&data[..8]).unwrap();
            let p = f.params;
            println!("{name}: {p:?}, ln L = {}", f.log_likelihood);
            assert!(f.log_likelihood.is_finite() && f.log_likelihood < 0.0);
            for (got, want, what) in [(p.alpha, alpha, "alpha"), (p.beta, beta, "beta")] {
                assert!(
                    (got - want).abs() / want < 0.01,
                    "{name}: {what} = {got}, published {want}"
                );
            }
        }
    }

    #[test]
    fn the_fit_is_a_maximum_and_its_gradient_vanishes() {
        let counts = validate(&[REGULAR[..8].to_vec()]).unwrap();
        let f = fit(&REGULAR[..8]).unwrap();
        let (ll, g) = counts.log_likelihood_and_gradient(&f.params);
        assert!((ll - f.log_likelihood).abs() < 1e-9);
        assert!(g.iter().all(|v| v.abs() < 1e-4), "{g:?}");
        for (da, db) in [(0.01, 0.0), (-0.01, 0.0), (0.0, 0.01), (0.0, -0.01)] {
            let near = Sbg {
                alpha: f.params.alpha * (1.0 + da),
                beta: f.params.beta * (1.0 + db),
            };
            assert!(counts.log_likelihood_and_gradient(&near).0 < ll);
        }
    }

    #[test]
    fn the_gradient_is_the_slope_of_the_likelihood() {
        let counts = validate(&[
            REGULAR.to_vec(),
            HIGH_END[..5].to_vec(),
            vec![40.0, 31.5, 30.0],
        ])
        .unwrap();
        let at = |p: &[f64]| Sbg {
            alpha: p[0].exp(),
            beta: p[1].exp(),
        };
        let p = [0.4f64.ln(), 2.5f64.ln()];
        let (_, grad) = counts.log_likelihood_and_gradient(&at(&p));
        for i in 0..2 {
            let (mut up, mut down) = (p, p);
            up[i] += 1e-6;
            down[i] -= 1e-6;
            let slope = (counts.log_likelihood_and_gradient(&at(&up)).0
                - counts.log_likelihood_and_gradient(&at(&down)).0)
                / 2e-6;
            assert!(
                (grad[i] - slope).abs() < 1e-5 * (1.0 + slope.abs()),
                "parameter {i}: {} vs {slope}",
                grad[i]
            );
        }
    }

    #[test]
    fn the_likelihood_is_the_sum_of_the_papers_terms() {
        // Equation B1 term by term, with P(T = t) and S(t) from the public API.
        let m = Sbg {
            alpha: 0.9,
            beta: 1.7,
        };
        let s = &HIGH_END[..8];
        let mut want = s[7] * m.survival(7).ln();
        for t in 1..8 {
            want += (s[t - 1] - s[t]) * m.churn_probability(t as u32).ln();
        }
        let got = validate(&[s.to_vec()])
            .unwrap()
            .log_likelihood_and_gradient(&m)
            .0;
        assert!((got - want).abs() < 1e-9 * want.abs(), "{got} vs {want}");
    }

    #[test]
    fn projects_the_held_out_years_and_a_rising_retention_rate() {
        for data in [&REGULAR, &HIGH_END] {
            let m = fit(&data[..8]).unwrap().params;
            let projected = m.project(12);
            for w in projected.windows(2) {
                assert!(w[1].0 < w[0].0, "survival falls: {projected:?}");
                assert!(w[1].1 > w[0].1, "retention rises: {projected:?}");
            }
            // Years 8 to 12 were not fitted; the paper's figure 5 shows them
            // tracked closely.
            let expected = m.expected_survivors(1000.0, 12);
            for t in 8..=12 {
                let err = (expected[t] - data[t]).abs() / data[t];
                assert!(
                    err < 0.05,
                    "year {t}: {} vs {} ({m:?})",
                    expected[t],
                    data[t]
                );
            }
        }
    }

    #[test]
    fn recursions_agree_with_each_other_and_the_closed_form() {
        for m in [
            Sbg {
                alpha: 0.704,
                beta: 1.182,
            },
            Sbg {
                alpha: 3.2,
                beta: 0.4,
            },
        ] {
            assert_eq!(m.survival(0), 1.0);
            assert_eq!(m.churn_probability(0), 0.0);
            assert!(m.retention_rate(0).is_nan());
            let projected = m.project(40);
            for t in 1..=40u32 {
                let (s, s_prev) = (m.survival(t), m.survival(t - 1));
                let r = m.retention_rate(t);
                assert!((r - s / s_prev).abs() < 1e-12, "t = {t}");
                assert!((m.churn_probability(t) - (s_prev - s)).abs() < 1e-12);
                assert!((s - survival_closed_form(&m, f64::from(t))).abs() < 1e-10 * s);
                let (ps, pr) = projected[t as usize - 1];
                assert!((ps - s).abs() < 1e-12 && (pr - r).abs() < 1e-15);
            }
        }
        let m = Sbg {
            alpha: 1.0,
            beta: 1.0,
        };
        assert_eq!(m.churn_probability(1), 0.5);
        assert!((m.survival(3) - 0.25).abs() < 1e-15, "S(t) = 1/(t + 1)");
        let expected = m.expected_survivors(200.0, 3);
        for (got, want) in expected.iter().zip([200.0, 100.0, 200.0 / 3.0, 50.0]) {
            assert!((got - want).abs() < 1e-12, "{expected:?}");
        }
    }

    /// Σ_{t ≥ n} S(t)/S(n − 1) · (1 + d)^−(t − n), summed far enough that the
    /// rest is below 1e-13 of the total.
    fn derl_by_definition(m: &Sbg, d: f64, n: u32) -> f64 {
        let n = f64::from(n);
        let base = survival_closed_form(m, n - 1.0);
        let terms = (40.0 / (1.0 + d).ln()) as u64;
        (0..terms)
            .rev()
            .map(|k| {
                let k = k as f64;
                survival_closed_form(m, n + k) / base * (1.0 + d).powf(-k)
            })
            .sum()
    }

    #[test]
    fn derl_equals_its_definition() {
        for (alpha, beta) in [(0.704, 1.182), (0.668, 3.806), (3.5, 12.0)] {
            let m = Sbg { alpha, beta };
            for d in [0.1, 0.01] {
                for n in [1, 2, 5, 20] {
                    let got = m.derl(d, n).unwrap();
                    let want = derl_by_definition(&m, d, n);
                    assert!(
                        (got - want).abs() < 1e-9 * want,
                        "{m:?}, d = {d}, n = {n}: {got} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn derl_with_a_small_discount_rate_keeps_the_whole_tail() {
        // z = 1/1.0001: the terms fall below 1e-15 of the sum long before the
        // sum is complete; the tail bound keeps summing.
        let m = Sbg {
            alpha: 0.704,
            beta: 1.182,
        };
        let (got, want) = (m.derl(1e-4, 3).unwrap(), derl_by_definition(&m, 1e-4, 3));
        assert!((got - want).abs() < 1e-8 * want, "{got} vs {want}");
    }

    #[test]
    fn derl_tends_to_the_undiscounted_lifetime_when_it_is_finite() {
        let m = Sbg {
            alpha: 3.5,
            beta: 12.0,
        };
        for n in [1, 4] {
            let limit = m.expected_residual_lifetime(n).unwrap();
            assert!((limit - (12.0 + f64::from(n) - 1.0) / 2.5).abs() < 1e-12);
            let near = m.derl(1e-5, n).unwrap();
            assert!(
                near < limit && (limit - near) / limit < 1e-3,
                "{near} vs {limit}"
            );
        }
        let heavy_tail = Sbg {
            alpha: 0.704,
            beta: 1.182,
        };
        assert_eq!(heavy_tail.expected_residual_lifetime(1), None);
    }

    #[test]
    fn derl_refuses_what_it_cannot_sum() {
        let m = Sbg {
            alpha: 0.7,
            beta: 1.2,
        };
        for d in [0.0, -0.1, f64::NAN, f64::INFINITY] {
            assert_eq!(m.derl(d, 1), None, "d = {d}");
        }
        assert_eq!(m.derl(0.1, 0), None);
    }

    #[test]
    fn joint_fit_of_cohorts_of_different_lengths() {
        // Expected counts from known parameters: the likelihood is a sum of
        // cross-entropies, each maximal at the truth, so the fit recovers it.
        let truth = Sbg {
            alpha: 0.9,
            beta: 2.4,
        };
        let cohorts: Vec<Vec<f64>> = [(5_000.0, 10), (3_000.0, 6), (8_000.0, 3), (500.0, 0)]
            .iter()
            .map(|&(size, periods)| truth.expected_survivors(size, periods))
            .collect();
        let f = fit_cohorts(&cohorts).unwrap();
        assert!(
            (f.params.alpha - truth.alpha).abs() < 1e-4 * truth.alpha
                && (f.params.beta - truth.beta).abs() < 1e-4 * truth.beta,
            "{:?}",
            f.params
        );

        // The same cohort twice: same estimates, twice the log-likelihood.
        let once = fit(&REGULAR[..8]).unwrap();
        let twice = fit_cohorts(&[REGULAR[..8].to_vec(), REGULAR[..8].to_vec()]).unwrap();
        assert!((twice.params.alpha - once.params.alpha).abs() < 1e-6);
        assert!((twice.params.beta - once.params.beta).abs() < 1e-6);
        assert!((twice.log_likelihood - 2.0 * once.log_likelihood).abs() < 1e-6);
    }

    #[test]
    fn constant_retention_fits_a_nearly_homogeneous_cohort() {
        // Every period keeps exactly half: no sign of heterogeneity, so the
        // estimates run off towards the geometric limit (α, β → ∞, α/(α + β)
        // = 1/2); the fit must still stop with a finite answer.
        let halving: Vec<f64> = (0..8).map(|t| 1024.0 / 2f64.powi(t)).collect();
        let f = fit(&halving).unwrap();
        assert!(f.log_likelihood.is_finite());
        for t in 1..=10 {
            let r = f.params.retention_rate(t);
            assert!(
                (r - 0.5).abs() < 0.01,
                "period {t}: {r} from {:?}",
                f.params
            );
        }
    }

    #[test]
    fn bad_inputs_are_refused() {
        let invalid = |r: Result<SbgFit, FitError>| matches!(r, Err(FitError::Invalid { .. }));
        assert!(invalid(fit(&[1000.0, 600.0, 700.0])), "survivors rise");
        assert!(invalid(fit(&[1000.0])), "one value");
        assert!(invalid(fit(&[1000.0, 600.0])), "one period: α/(α + β) only");
        assert!(invalid(fit(&[])), "no values");
        assert!(invalid(fit(&[0.0, 0.0, 0.0])), "empty cohort");
        assert!(invalid(fit(&[1000.0, -1.0])), "negative");
        assert!(invalid(fit(&[1000.0, f64::NAN])), "not a number");
        assert!(invalid(fit_cohorts(&[vec![10.0], vec![20.0]])), "no period");
        assert!(
            invalid(fit_cohorts(&[vec![10.0, 5.0], vec![20.0]])),
            "one period"
        );
        assert_eq!(fit_cohorts(&[]), Err(FitError::Empty));
        assert!(matches!(
            fit_cohorts(&[REGULAR.to_vec(), vec![100.0, 90.0, 95.0]]),
            Err(FitError::Invalid { row: 1, .. })
        ));
        assert!(matches!(
            fit(&[1000.0, 1000.0, 1000.0]),
            Err(FitError::NoConvergence(_))
        ));
    }

    #[test]
    fn cohort_survivors_follow_the_documented_convention() {
        let c = |acquired, ended| Tenure { acquired, ended };
        let customers = [
            c(0, None),
            c(0, Some(1)), // lost in period 1
            c(0, Some(3)), // lost in period 3
            c(0, Some(0)), // left before the first renewal: period 1 too
            c(2, Some(3)),
            c(2, None),
            c(3, None),
            c(3, Some(3)), // lost in period 1, which is not over yet
        ];
        let curves = cohort_survivors(&customers, 3).unwrap();
        assert_eq!(curves.keys().copied().collect::<Vec<_>>(), vec![0, 2, 3]);
        assert_eq!(curves[&0], vec![4.0, 2.0, 2.0, 1.0]);
        assert_eq!(curves[&2], vec![2.0, 1.0]);
        assert_eq!(curves[&3], vec![2.0]);

        // The curves go straight into the joint fit.
        let cohorts: Vec<Vec<f64>> = curves.into_values().collect();
        assert!(fit_cohorts(&cohorts).is_ok());

        assert_eq!(cohort_survivors(&[], 3), Err(FitError::Empty));
        for (bad, row) in [
            (vec![c(0, None), c(4, None)], 1),
            (vec![c(2, Some(1))], 0),
            (vec![c(1, Some(5))], 0),
        ] {
            assert!(
                matches!(cohort_survivors(&bad, 3), Err(FitError::Invalid { row: r, .. }) if r == row),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn cohort_survivors_reproduce_a_published_curve() {
        // 1,000 customers acquired in period 0, lost as in the paper's "regular"
        // segment, observed through period 7.
        let mut customers = Vec::new();
        for t in 1..8 {
            let lost = (REGULAR[t - 1] - REGULAR[t]) as usize;
            customers.extend(std::iter::repeat_n(
                Tenure {
                    acquired: 0,
                    ended: Some(t as u32),
                },
                lost,
            ));
        }
        customers.extend(std::iter::repeat_n(
            Tenure {
                acquired: 0,
                ended: None,
            },
            REGULAR[7] as usize,
        ));
        let curves = cohort_survivors(&customers, 7).unwrap();
        assert_eq!(curves[&0], REGULAR[..8].to_vec());
    }
}
