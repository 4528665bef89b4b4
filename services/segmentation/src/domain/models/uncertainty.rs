//! Parameter uncertainty of the maximum-likelihood fits: standard errors from the
//! observed information, i.e. the inverse of the Hessian of the negative *total*
//! log-likelihood at the optimum, and Wald 95 % bounds `value ∓ 1.96·se`.
//!
//! The definitions are those of the Python `lifetimes` 0.11.3 `summary`, so the
//! numbers compare: lifetimes takes H, the Hessian of the *mean* negative
//! log-likelihood (the total divided by the number of customers N) with respect to
//! the *logarithms* of the parameters, and reports
//! `se(θᵢ) = sqrt(θᵢ² · (H⁻¹)ᵢᵢ / N)`, with bounds `θᵢ ∓ 1.96·se(θᵢ)`. Here the
//! Hessian is that of the total (N·H), so `se(θᵢ) = θᵢ · sqrt(((N·H)⁻¹)ᵢᵢ)`: the
//! delta method from ln θ to θ. At the optimum (zero gradient) this equals the
//! square root of the diagonal of the inverse Hessian with respect to the
//! parameters themselves. (lifetimes' `variance_matrix_` off the diagonal is
//! `θⱼ²·(H⁻¹)ᵢⱼ/N`, not symmetric and not the delta-method covariance
//! `θᵢθⱼ·(H⁻¹)ᵢⱼ/N`; its summary reads only the diagonal, which is right.)
//!
//! The Hessians are numerical: central differences of the analytic gradient, or
//! second differences of the log-likelihood, with steps chosen per coordinate (on
//! the log scale a step h is a relative step h in the parameter).

use super::FitError;

/// The two-sided 95 % normal quantile, as lifetimes rounds it.
pub const Z_95: f64 = 1.96;

/// One fitted parameter with its standard error and Wald 95 % bounds.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ParamEstimate {
    pub name: &'static str,
    pub value: f64,
    pub standard_error: f64,
    /// `value − 1.96·standard_error` (may be negative for a positive parameter).
    pub lower_95: f64,
    /// `value + 1.96·standard_error`.
    pub upper_95: f64,
}

impl ParamEstimate {
    pub fn new(name: &'static str, value: f64, standard_error: f64) -> Self {
        ParamEstimate {
            name,
            value,
            standard_error,
            lower_95: value - Z_95 * standard_error,
            upper_95: value + Z_95 * standard_error,
        }
    }
}

/// Hessian (row-major n×n, symmetrised) of a function whose gradient is `grad`,
/// by central differences of the gradient: column j is
/// `(∇f(x + hⱼeⱼ) − ∇f(x − hⱼeⱼ)) / 2hⱼ`. 2n gradient evaluations.
pub fn hessian_from_gradient(
    grad: impl Fn(&[f64]) -> Vec<f64>,
    at: &[f64],
    steps: &[f64],
) -> Vec<f64> {
    let n = at.len();
    assert_eq!(steps.len(), n, "one step per coordinate");
    let mut h = vec![0.0; n * n];
    for j in 0..n {
        let (mut up, mut down) = (at.to_vec(), at.to_vec());
        up[j] += steps[j];
        down[j] -= steps[j];
        let (gu, gd) = (grad(&up), grad(&down));
        for i in 0..n {
            h[i * n + j] = (gu[i] - gd[i]) / (2.0 * steps[j]);
        }
    }
    symmetrise(&mut h, n);
    h
}

/// Hessian (row-major n×n) of `f` by second differences of its values:
/// `(f(x+hᵢ) − 2f(x) + f(x−hᵢ)) / hᵢ²` on the diagonal and
/// `(f(++) − f(+−) − f(−+) + f(−−)) / 4hᵢhⱼ` off it. 1 + 2n² evaluations; less
/// precise than [`hessian_from_gradient`] (rounding error grows as |f|/h²).
pub fn hessian_from_values(f: impl Fn(&[f64]) -> f64, at: &[f64], steps: &[f64]) -> Vec<f64> {
    let n = at.len();
    assert_eq!(steps.len(), n, "one step per coordinate");
    let at_shift = |moves: &[(usize, f64)]| {
        let mut p = at.to_vec();
        for &(k, d) in moves {
            p[k] += d;
        }
        f(&p)
    };
    let centre = f(at);
    let mut h = vec![0.0; n * n];
    for i in 0..n {
        let hi = steps[i];
        h[i * n + i] = (at_shift(&[(i, hi)]) - 2.0 * centre + at_shift(&[(i, -hi)])) / (hi * hi);
        for j in 0..i {
            let hj = steps[j];
            let v = (at_shift(&[(i, hi), (j, hj)])
                - at_shift(&[(i, hi), (j, -hj)])
                - at_shift(&[(i, -hi), (j, hj)])
                + at_shift(&[(i, -hi), (j, -hj)]))
                / (4.0 * hi * hj);
            h[i * n + j] = v;
            h[j * n + i] = v;
        }
    }
    h
}

fn symmetrise(h: &mut [f64], n: usize) {
    for i in 0..n {
        for j in 0..i {
            let v = 0.5 * (h[i * n + j] + h[j * n + i]);
            h[i * n + j] = v;
            h[j * n + i] = v;
        }
    }
}

/// A pivot of the Cholesky factorisation below this share of its diagonal entry
/// counts as zero: the numerical Hessians are good to some 8–10 digits, so such a
/// matrix is singular at their precision.
const PIVOT_TOL: f64 = 1e-10;

/// Why [`invert_spd`] refused a matrix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "the matrix is not positive definite: Cholesky pivot {pivot} is {value:e} \
     (diagonal entry {diagonal:e})"
)]
pub struct NotPositiveDefinite {
    /// Index of the first failing pivot.
    pub pivot: usize,
    /// The pivot `Aⱼⱼ − Σₖ Lⱼₖ²` (not finite when the matrix is not).
    pub value: f64,
    pub diagonal: f64,
}

/// Inverse of a symmetric positive definite n×n matrix (row-major; only the lower
/// triangle is read) by Cholesky, `A = L Lᵀ`, `A⁻¹ = L⁻ᵀ L⁻¹`. Refuses a matrix
/// that is not positive definite, or not finite.
pub fn invert_spd(a: &[f64], n: usize) -> Result<Vec<f64>, NotPositiveDefinite> {
    assert_eq!(a.len(), n * n, "an n×n matrix");
    let mut l = vec![0.0; n * n];
    for j in 0..n {
        let diagonal = a[j * n + j];
        let d = diagonal - (0..j).map(|k| l[j * n + k] * l[j * n + k]).sum::<f64>();
        if !(d.is_finite() && diagonal.is_finite() && d > PIVOT_TOL * diagonal.abs()) {
            return Err(NotPositiveDefinite {
                pivot: j,
                value: d,
                diagonal,
            });
        }
        let root = d.sqrt();
        l[j * n + j] = root;
        for i in j + 1..n {
            let s = a[i * n + j] - (0..j).map(|k| l[i * n + k] * l[j * n + k]).sum::<f64>();
            if !s.is_finite() {
                return Err(NotPositiveDefinite {
                    pivot: j,
                    value: s,
                    diagonal,
                });
            }
            l[i * n + j] = s / root;
        }
    }
    // L⁻¹ (lower triangular) by forward substitution, column by column.
    let mut li = vec![0.0; n * n];
    for c in 0..n {
        li[c * n + c] = 1.0 / l[c * n + c];
        for i in c + 1..n {
            let s: f64 = (c..i).map(|k| l[i * n + k] * li[k * n + c]).sum();
            li[i * n + c] = -s / l[i * n + i];
        }
    }
    // A⁻¹ = (L⁻¹)ᵀ L⁻¹.
    let mut inv = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let v: f64 = (i..n).map(|k| li[k * n + i] * li[k * n + j]).sum();
            inv[i * n + j] = v;
            inv[j * n + i] = v;
        }
    }
    Ok(inv)
}

/// Estimates for positive parameters `values`, given `hessian_log`, the Hessian
/// of the negative total log-likelihood with respect to their logarithms (at the
/// optimum): `se(θᵢ) = θᵢ · sqrt((H⁻¹)ᵢᵢ)` (lifetimes' definition, see the module
/// notes). Refuses a Hessian that is not positive definite.
pub fn log_scale_estimates(
    names: &[&'static str],
    values: &[f64],
    hessian_log: &[f64],
) -> Result<Vec<ParamEstimate>, FitError> {
    let n = values.len();
    let inv = invert_spd(hessian_log, n).map_err(|e| {
        FitError::NoStandardErrors(format!(
            "the Hessian of the negative log-likelihood at {} is not positive definite \
             (first failing pivot: {}, {:e}): the parameters are not at a maximum of the \
             likelihood, or the data do not identify them",
            describe(names, values),
            names[e.pivot],
            e.value
        ))
    })?;
    Ok((0..n)
        .map(|i| ParamEstimate::new(names[i], values[i], values[i] * inv[i * n + i].sqrt()))
        .collect())
}

/// Checks that every parameter is finite and positive.
pub(crate) fn check_positive(names: &[&'static str], values: &[f64]) -> Result<(), FitError> {
    match values.iter().position(|v| !(v.is_finite() && *v > 0.0)) {
        None => Ok(()),
        Some(i) => Err(FitError::NoStandardErrors(format!(
            "parameter {} = {} must be finite and positive",
            names[i], values[i]
        ))),
    }
}

fn describe(names: &[&'static str], values: &[f64]) -> String {
    names
        .iter()
        .zip(values)
        .map(|(n, v)| format!("{n} = {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// f(x) = ½ xᵀAx + bᵀx + exp(x₀)·x₁²: a quadratic plus a term with known
    /// second derivatives, so H = A + [[e^x₀ x₁², 2e^x₀ x₁, 0], [2e^x₀ x₁, 2e^x₀, 0], 0].
    const A: [f64; 9] = [4.0, 1.0, -0.5, 1.0, 3.0, 0.25, -0.5, 0.25, 2.0];
    const B: [f64; 3] = [0.3, -1.0, 2.0];

    fn f(x: &[f64]) -> f64 {
        let mut v = 0.0;
        for i in 0..3 {
            v += B[i] * x[i];
            for j in 0..3 {
                v += 0.5 * x[i] * A[i * 3 + j] * x[j];
            }
        }
        v + x[0].exp() * x[1] * x[1]
    }

    fn grad(x: &[f64]) -> Vec<f64> {
        let e = x[0].exp();
        let mut g: Vec<f64> = (0..3)
            .map(|i| B[i] + (0..3).map(|j| A[i * 3 + j] * x[j]).sum::<f64>())
            .collect();
        g[0] += e * x[1] * x[1];
        g[1] += 2.0 * e * x[1];
        g
    }

    fn exact(x: &[f64]) -> Vec<f64> {
        let e = x[0].exp();
        let mut h = A.to_vec();
        h[0] += e * x[1] * x[1];
        h[1] += 2.0 * e * x[1];
        h[3] += 2.0 * e * x[1];
        h[4] += 2.0 * e;
        h
    }

    #[test]
    fn numerical_hessians_match_the_exact_one() {
        let at = [0.4, -1.3, 2.2];
        let want = exact(&at);
        let by_grad = hessian_from_gradient(grad, &at, &[1e-5; 3]);
        let by_value = hessian_from_values(f, &at, &[1e-4; 3]);
        for k in 0..9 {
            assert!((by_grad[k] - want[k]).abs() < 1e-8, "{k}: {by_grad:?}");
            assert!((by_value[k] - want[k]).abs() < 1e-5, "{k}: {by_value:?}");
        }
        // A pure quadratic: both are exact up to rounding, whatever the step.
        let q = |x: &[f64]| f(x) - x[0].exp() * x[1] * x[1];
        let h = hessian_from_values(q, &[1.0, 2.0, 3.0], &[0.1, 0.2, 0.05]);
        for k in 0..9 {
            assert!((h[k] - A[k]).abs() < 1e-9, "{k}: {h:?}");
        }
    }

    #[test]
    fn inverts_a_symmetric_positive_definite_matrix() {
        let inv = invert_spd(&A, 3).unwrap();
        for i in 0..3 {
            for j in 0..3 {
                let v: f64 = (0..3).map(|k| A[i * 3 + k] * inv[k * 3 + j]).sum();
                let id = if i == j { 1.0 } else { 0.0 };
                assert!((v - id).abs() < 1e-14, "({i}, {j}): {v}");
                assert_eq!(inv[i * 3 + j], inv[j * 3 + i]);
            }
        }
        // 2×2 by hand: [[4, 2], [2, 3]]⁻¹ = [[3, −2], [−2, 4]] / 8.
        let inv = invert_spd(&[4.0, 2.0, 2.0, 3.0], 2).unwrap();
        for (got, want) in inv.iter().zip([0.375, -0.25, -0.25, 0.5]) {
            assert!((got - want).abs() < 1e-15, "{inv:?}");
        }
    }

    #[test]
    fn refuses_a_hessian_that_is_not_positive_definite() {
        // Indefinite (a saddle): eigenvalues 3 and −1.
        let e = invert_spd(&[1.0, 2.0, 2.0, 1.0], 2).unwrap_err();
        assert_eq!(e.pivot, 1);
        assert!(e.value < 0.0);
        // Singular (positive semi-definite): a direction with no curvature.
        assert_eq!(invert_spd(&[1.0, 1.0, 1.0, 1.0], 2).unwrap_err().pivot, 1);
        // Negative definite (a maximum of the negative log-likelihood).
        assert_eq!(invert_spd(&[-2.0, 0.0, 0.0, -1.0], 2).unwrap_err().pivot, 0);
        assert!(invert_spd(&[f64::NAN, 0.0, 0.0, 1.0], 2).is_err());
        // The numerical Hessian of a saddle, through to the estimates.
        let saddle = |x: &[f64]| x[0] * x[0] - x[1] * x[1] + 0.5 * x[0] * x[1];
        let h = hessian_from_values(saddle, &[0.0, 0.0], &[1e-3, 1e-3]);
        let err = log_scale_estimates(&["u", "v"], &[1.0, 1.0], &h).unwrap_err();
        assert!(
            matches!(&err, FitError::NoStandardErrors(m) if m.contains("not positive definite")),
            "{err}"
        );
    }

    #[test]
    fn log_scale_estimates_apply_the_delta_method_and_the_wald_bounds() {
        // H = diag(400, 25) on (ln θ₁, ln θ₂): var(ln θ) = (1/400, 1/25),
        // se(θ) = θ · sd(ln θ).
        let est = log_scale_estimates(&["s", "t"], &[2.0, 10.0], &[400.0, 0.0, 0.0, 25.0]).unwrap();
        assert_eq!(est[0].name, "s");
        assert!((est[0].standard_error - 0.1).abs() < 1e-15);
        assert!((est[1].standard_error - 2.0).abs() < 1e-15);
        assert!((est[1].lower_95 - (10.0 - 1.96 * 2.0)).abs() < 1e-12);
        assert!((est[1].upper_95 - (10.0 + 1.96 * 2.0)).abs() < 1e-12);
        assert!(check_positive(&["s", "t"], &[1.0, 0.0]).is_err());
        assert!(check_positive(&["s", "t"], &[1.0, f64::NAN]).is_err());
        assert!(check_positive(&["s", "t"], &[1.0, 2.0]).is_ok());
    }
}
