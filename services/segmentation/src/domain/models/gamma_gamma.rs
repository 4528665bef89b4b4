//! Gamma-Gamma spend model (Fader, Hardie & Lee 2005, "RFM and CLV"): a customer's
//! transaction values are Gamma(p, ν) with ν ~ Gamma(q, γ) across customers; fitted
//! on customers with at least one repeat purchase.

use super::FitError;
use super::optimize::{bfgs, nelder_mead};
use super::special::{digamma, ln_gamma};
use super::uncertainty::{
    ParamEstimate, check_positive, hessian_from_gradient, log_scale_estimates,
};

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GammaGamma {
    pub p: f64,
    pub q: f64,
    pub gamma: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GammaGammaFit {
    pub params: GammaGamma,
    pub log_likelihood: f64,
}

impl GammaGamma {
    /// ln L of one customer with `x` repeat purchases of mean value `mean_spend`
    /// (the constant terms in the individual values are omitted).
    pub fn log_likelihood(&self, x: f64, mean_spend: f64) -> f64 {
        let GammaGamma { p, q, gamma } = *self;
        ln_gamma(p * x + q) - ln_gamma(p * x) - ln_gamma(q)
            + q * gamma.ln()
            + (p * x - 1.0) * mean_spend.ln()
            + (p * x) * x.ln()
            - (p * x + q) * (gamma + mean_spend * x).ln()
    }

    /// E[spend per transaction | x, mean spend]: a weighted mean of the population
    /// mean and the customer's own mean, the weight growing with x.
    pub fn expected_spend(&self, x: f64, mean_spend: f64) -> f64 {
        let GammaGamma { p, q, gamma } = *self;
        (p * (gamma + x * mean_spend)) / (p * x + q - 1.0)
    }
}

fn validate(data: &[(f64, f64)]) -> Result<(), FitError> {
    if data.is_empty() {
        return Err(FitError::Empty);
    }
    for (row, (x, m)) in data.iter().enumerate() {
        if !(*x >= 1.0 && *m > 0.0 && x.is_finite() && m.is_finite()) {
            return Err(FitError::Invalid {
                row,
                reason: format!("x = {x}, mean spend = {m}: need x ≥ 1 and spend > 0"),
            });
        }
    }
    Ok(())
}

/// Fits on `(x, mean_spend)` pairs with x ≥ 1 and mean spend > 0.
pub fn fit(data: &[(f64, f64)]) -> Result<GammaGammaFit, FitError> {
    validate(data)?;
    // Identical (x, mean spend) pairs are one weighted row, and the gamma-function
    // terms, which depend on x alone, are computed once per x: both outside the
    // optimiser's loop.
    let spend = Spend::new(data);
    let at = |v: &[f64]| GammaGamma {
        p: v[0].exp(),
        q: v[1].exp(),
        gamma: v[2].exp(),
    };
    let neg_ll = |v: &[f64]| -> f64 {
        let (ll, _) = spend.log_likelihood_and_gradient(&at(v));
        if ll.is_finite() { -ll } else { f64::MAX }
    };
    // ln L per customer and its gradient in (ln p, ln q, ln γ). A scoring run's
    // profile showed the derivative-free search taking 85 % of the run on a
    // population with little spread in spend (q and γ drift off together, and
    // Nelder-Mead crawls after them); BFGS stops in tens of steps.
    let per = 1.0 / data.len() as f64;
    let neg_fg = |v: &[f64]| -> (f64, Vec<f64>) {
        let (ll, g) = spend.log_likelihood_and_gradient(&at(v));
        (-ll * per, g.iter().map(|d| -d * per).collect())
    };
    let found = bfgs(neg_fg, &[0.0; 3], 1_000, 1e-15)
        .filter(|(v, f)| f.is_finite() && v.iter().all(|x| x.is_finite() && x.abs() < 50.0));
    let (v, best) = match found {
        Some((v, f)) => (v, f / per),
        None => {
            let (v, _) = nelder_mead(neg_ll, &[0.0; 3], 1.0, 20_000, 1e-14);
            nelder_mead(neg_ll, &v, 0.1, 20_000, 1e-15)
        }
    };
    if best == f64::MAX {
        return Err(FitError::NoConvergence(
            "log-likelihood is not finite".into(),
        ));
    }
    Ok(GammaGammaFit {
        params: GammaGamma {
            p: v[0].exp(),
            q: v[1].exp(),
            gamma: v[2].exp(),
        },
        log_likelihood: -best,
    })
}

/// Parameter names in the order of [`standard_errors`]' result (lifetimes
/// calls the scale `v`).
pub const PARAM_NAMES: [&str; 3] = ["p", "q", "gamma"];

/// Step of the numerical Hessian on the log scale: 10⁻⁵ of each parameter.
const LOG_STEP: f64 = 1e-5;

/// Standard errors and Wald 95 % bounds of `params` (normally [`fit`]'s) on
/// `data`, in the order p, q, γ: the observed information, i.e. the inverse
/// Hessian of the negative total log-likelihood, taken with respect to the
/// parameters' logarithms and carried to the parameters by the delta method,
/// `se(θ) = θ·sqrt((H⁻¹)ᵢᵢ)`; bounds `θ ∓ 1.96·se`. This is the definition of
/// `GammaGammaFitter.summary` in Python `lifetimes` 0.11.3 (see
/// [`super::uncertainty`]). The Hessian is central differences of the analytic
/// gradient, over identical `(x, mean spend)` pairs grouped once: 6 gradient
/// evaluations. Fails on invalid data, on parameters that are not finite and
/// positive, and where the Hessian is not positive definite (not a maximum, or
/// spend too uniform for q and γ to be told apart).
pub fn standard_errors(
    data: &[(f64, f64)],
    params: &GammaGamma,
) -> Result<Vec<ParamEstimate>, FitError> {
    validate(data)?;
    let values = [params.p, params.q, params.gamma];
    check_positive(&PARAM_NAMES, &values)?;
    let spend = Spend::new(data);
    let neg_gradient = |v: &[f64]| -> Vec<f64> {
        let m = GammaGamma {
            p: v[0].exp(),
            q: v[1].exp(),
            gamma: v[2].exp(),
        };
        let (_, g) = spend.log_likelihood_and_gradient(&m);
        g.iter().map(|v| -v).collect()
    };
    let at: Vec<f64> = values.iter().map(|v| v.ln()).collect();
    let hessian = hessian_from_gradient(neg_gradient, &at, &[LOG_STEP; 3]);
    log_scale_estimates(&PARAM_NAMES, &values, &hessian)
}

/// Identical `(x, mean spend)` pairs with their count, with the per-pair terms
/// that do not depend on the parameters.
struct Spend {
    xs: Vec<f64>,
    rows: Vec<SpendRow>,
}

/// (index into `xs`, x, mean spend, ln mean spend, x ln x, customers)
type SpendRow = (usize, f64, f64, f64, f64, f64);

impl Spend {
    fn new(data: &[(f64, f64)]) -> Self {
        let mut xs: Vec<f64> = Vec::new();
        let mut x_index: std::collections::HashMap<u64, usize> = Default::default();
        let mut rows: std::collections::HashMap<(u64, u64), SpendRow> = Default::default();
        for &(x, m) in data {
            let xi = *x_index.entry(x.to_bits()).or_insert_with(|| {
                xs.push(x);
                xs.len() - 1
            });
            rows.entry((x.to_bits(), m.to_bits()))
                .or_insert((xi, x, m, m.ln(), x * x.ln(), 0.0))
                .5 += 1.0;
        }
        Spend {
            xs,
            rows: rows.into_values().collect(),
        }
    }

    /// Σ ln L over the customers and its gradient with respect to
    /// (ln p, ln q, ln γ): what [`fit`] searches and the standard errors read.
    fn log_likelihood_and_gradient(&self, m: &GammaGamma) -> (f64, [f64; 3]) {
        let GammaGamma { p, q, gamma } = *m;
        let (dq0, ln_g) = (digamma(q), gamma.ln());
        let per_x: Vec<(f64, f64, f64)> = self
            .xs
            .iter()
            .map(|&x| {
                let (a, b) = (digamma(p * x + q), digamma(p * x));
                (
                    ln_gamma(p * x + q) - ln_gamma(p * x) - ln_gamma(q) + q * ln_g,
                    x * (a - b),
                    a - dq0 + ln_g,
                )
            })
            .collect();
        let (mut ll, mut g) = (0.0, [0.0; 3]);
        for &(xi, x, m, ln_m, x_ln_x, n) in &self.rows {
            let (c, dp, dq) = per_x[xi];
            let ln_s = (gamma + m * x).ln();
            ll += n * (c + (p * x - 1.0) * ln_m + p * x_ln_x - (p * x + q) * ln_s);
            g[0] += n * (dp + x * ln_m + x_ln_x - x * ln_s);
            g[1] += n * (dq - ln_s);
            g[2] += n * (q / gamma - (p * x + q) / (gamma + m * x));
        }
        (ll, [g[0] * p, g[1] * q, g[2] * gamma])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::models::bgnbd::tests::{assert_matches_lifetimes, cdnow};

    #[test]
    fn reproduces_the_published_cdnow_fit() {
        let data: Vec<(f64, f64)> = cdnow()
            .into_iter()
            .filter(|(h, _)| h.x > 0.0)
            .map(|(h, m)| (h.x, m))
            .collect();
        assert_eq!(data.len(), 946, "repeat buyers in the CDNOW sample");
        let f = fit(&data).unwrap().params;
        for (got, want, name) in [
            (f.p, 6.25, "p"),
            (f.q, 3.74, "q"),
            (f.gamma, 15.44, "gamma"),
        ] {
            assert!(
                (got - want).abs() / want < 0.01,
                "{name} = {got}, published {want}"
            );
        }
    }

    #[test]
    fn nearly_uniform_spend_still_fits_and_predicts_the_common_mean() {
        // Spend barely varies between customers: q and γ grow without bound
        // together; the fit must still stop, finite, with the right mean.
        let data: Vec<(f64, f64)> = (0..5_000)
            .map(|i| (1.0 + (i % 7) as f64, 30.0 + (i % 13) as f64 * 0.01))
            .collect();
        let f = fit(&data).unwrap();
        assert!(f.log_likelihood.is_finite());
        let spend = f.params.expected_spend(3.0, 30.06);
        assert!((spend - 30.06).abs() < 0.5, "{spend} from {:?}", f.params);
    }

    #[test]
    fn expected_spend_shrinks_towards_the_population_mean() {
        let m = GammaGamma {
            p: 6.25,
            q: 3.74,
            gamma: 15.44,
        };
        let population_mean = m.p * m.gamma / (m.q - 1.0);
        let one = m.expected_spend(1.0, 100.0);
        let many = m.expected_spend(50.0, 100.0);
        assert!(one < 100.0 && one > population_mean);
        assert!(
            (many - 100.0).abs() < (one - 100.0).abs(),
            "more purchases, more weight on the own mean"
        );
        // Closed form by hand for x = 2, mean 30.
        assert!(
            (m.expected_spend(2.0, 30.0) - 6.25 * (15.44 + 60.0) / (12.5 + 3.74 - 1.0)).abs()
                < 1e-12
        );
    }

    fn repeat_buyers() -> Vec<(f64, f64)> {
        cdnow()
            .into_iter()
            .filter(|(h, _)| h.x > 0.0)
            .map(|(h, m)| (h.x, m))
            .collect()
    }

    /// lifetimes 0.11.3 `GammaGammaFitter(penalizer_coef=0.0).summary` on the
    /// CDNOW repeat buyers (lifetimes names γ `v`): (name, coef, se(coef), lower
    /// 95% bound, upper 95% bound). The Python snippet that produced it, and its
    /// output, are with `LIFETIMES_BGNBD_SUMMARY` in `bgnbd`'s tests; in short:
    ///
    /// ```python
    /// import lifetimes, pandas as pd
    /// df = pd.read_csv("services/segmentation/tests/fixtures/cdnow_summary.csv")
    /// rep = df[df["x"] > 0]
    /// gg = lifetimes.GammaGammaFitter(penalizer_coef=0.0).fit(rep["x"], rep["zbar"])
    /// print(gg.summary.to_string(float_format="%.10g"))
    /// ```
    const LIFETIMES_GG_SUMMARY: [(&str, f64, f64, f64, f64); 3] = [
        ("p", 6.248802496, 1.189687048, 3.917015882, 8.58058911),
        ("q", 3.744588461, 0.2901656174, 3.175863851, 4.313313071),
        ("gamma", 15.44774806, 4.159993928, 7.294159965, 23.60133616),
    ];

    #[test]
    fn standard_errors_match_lifetimes_on_cdnow() {
        let data = repeat_buyers();
        let f = fit(&data).unwrap();
        let est = standard_errors(&data, &f.params).unwrap();
        // The done-when: within 5 % (it is better than 1e-7 at our optimum).
        assert_matches_lifetimes(&est, &LIFETIMES_GG_SUMMARY, 0.05);
        // At lifetimes' own optimum: the same definition, to the Hessian's precision.
        let theirs = GammaGamma {
            p: 6.248802496,
            q: 3.744588461,
            gamma: 15.44774806,
        };
        assert_matches_lifetimes(
            &standard_errors(&data, &theirs).unwrap(),
            &LIFETIMES_GG_SUMMARY,
            1e-6,
        );
    }

    #[test]
    fn the_grouped_gradient_is_the_slope_of_the_summed_likelihood() {
        let data = repeat_buyers();
        let spend = Spend::new(&data);
        assert!(spend.rows.len() < data.len(), "CDNOW repeats some pairs");
        let at = |v: &[f64]| GammaGamma {
            p: v[0].exp(),
            q: v[1].exp(),
            gamma: v[2].exp(),
        };
        let total = |v: &[f64]| -> f64 {
            let m = at(v);
            data.iter().map(|&(x, s)| m.log_likelihood(x, s)).sum()
        };
        let v = [1.5f64.ln(), 2.0f64.ln(), 40.0f64.ln()];
        let (ll, grad) = spend.log_likelihood_and_gradient(&at(&v));
        assert!((ll - total(&v)).abs() < 1e-9 * ll.abs(), "{ll}");
        for i in 0..3 {
            let (mut up, mut down) = (v, v);
            up[i] += 1e-6;
            down[i] -= 1e-6;
            let slope = (total(&up) - total(&down)) / 2e-6;
            assert!(
                (grad[i] - slope).abs() < 1e-4 * (1.0 + slope.abs()),
                "parameter {i}: {} vs {slope}",
                grad[i]
            );
        }
    }

    #[test]
    fn standard_errors_refuse_a_point_that_is_not_a_maximum_and_bad_input() {
        let data = repeat_buyers();
        // Far from the optimum (p = 6.25) the negative log-likelihood is not
        // convex: its Hessian there has two negative eigenvalues (−510, −144 by
        // autograd in lifetimes' parametrisation).
        let saddle = GammaGamma {
            p: 1.0,
            q: 3.74,
            gamma: 15.4,
        };
        let err = standard_errors(&data, &saddle).unwrap_err();
        assert!(
            matches!(&err, FitError::NoStandardErrors(m) if m.contains("not positive definite")),
            "{err}"
        );
        assert_eq!(standard_errors(&[], &saddle), Err(FitError::Empty));
        assert!(matches!(
            standard_errors(&[(0.0, 10.0)], &saddle),
            Err(FitError::Invalid { row: 0, .. })
        ));
        let zero = GammaGamma {
            gamma: 0.0,
            ..saddle
        };
        assert!(matches!(
            standard_errors(&data, &zero),
            Err(FitError::NoStandardErrors(m)) if m.contains("gamma = 0")
        ));
    }
}
