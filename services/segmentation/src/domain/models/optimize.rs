//! Minimisers for the models' few positive parameters (optimised on a log
//! scale): BFGS where the gradient is known, which needs a few dozen
//! evaluations, and Nelder-Mead, derivative-free and slower, as the fallback.

/// Minimises `f` from `start`; returns the best point and its value.
pub fn nelder_mead(
    f: impl Fn(&[f64]) -> f64,
    start: &[f64],
    step: f64,
    max_iter: usize,
    tol: f64,
) -> (Vec<f64>, f64) {
    let n = start.len();
    let mut simplex: Vec<Vec<f64>> = vec![start.to_vec()];
    for i in 0..n {
        let mut p = start.to_vec();
        p[i] += step;
        simplex.push(p);
    }
    let mut values: Vec<f64> = simplex.iter().map(|p| f(p)).collect();
    for _ in 0..max_iter {
        let mut order: Vec<usize> = (0..=n).collect();
        order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
        simplex = order.iter().map(|&i| simplex[i].clone()).collect();
        values = order.iter().map(|&i| values[i]).collect();
        if (values[n] - values[0]).abs() <= tol * (values[0].abs() + tol) {
            break;
        }
        let centroid: Vec<f64> = (0..n)
            .map(|j| simplex[..n].iter().map(|p| p[j]).sum::<f64>() / n as f64)
            .collect();
        let towards = |coef: f64| -> Vec<f64> {
            (0..n)
                .map(|j| centroid[j] + coef * (simplex[n][j] - centroid[j]))
                .collect()
        };
        let reflected = towards(-1.0);
        let fr = f(&reflected);
        if fr < values[0] {
            let expanded = towards(-2.0);
            let fe = f(&expanded);
            if fe < fr {
                simplex[n] = expanded;
                values[n] = fe;
            } else {
                simplex[n] = reflected;
                values[n] = fr;
            }
        } else if fr < values[n - 1] {
            simplex[n] = reflected;
            values[n] = fr;
        } else {
            let contracted = if fr < values[n] {
                towards(-0.5)
            } else {
                towards(0.5)
            };
            let fc = f(&contracted);
            if fc < values[n].min(fr) {
                simplex[n] = contracted;
                values[n] = fc;
            } else {
                // Shrink towards the best point.
                for i in 1..=n {
                    simplex[i] = (0..n)
                        .map(|j| simplex[0][j] + 0.5 * (simplex[i][j] - simplex[0][j]))
                        .collect();
                    values[i] = f(&simplex[i]);
                }
            }
        }
    }
    let best = (0..=n)
        .min_by(|&a, &b| values[a].total_cmp(&values[b]))
        .unwrap_or(0);
    (simplex[best].clone(), values[best])
}

/// BFGS with a backtracking (Armijo) line search. `fg` returns the value and
/// the gradient. Stops when a step no longer lowers the value by more than `tol`
/// relative, or the gradient vanishes; None when the value is not finite at the
/// start or the iterations run out.
pub fn bfgs(
    fg: impl Fn(&[f64]) -> (f64, Vec<f64>),
    start: &[f64],
    max_iter: usize,
    tol: f64,
) -> Option<(Vec<f64>, f64)> {
    let n = start.len();
    let mut x = start.to_vec();
    let (mut f, mut g) = fg(&x);
    if !f.is_finite() || g.iter().any(|v| !v.is_finite()) {
        return None;
    }
    // Inverse Hessian estimate, row-major.
    let mut h = identity(n);
    for _ in 0..max_iter {
        if g.iter().map(|v| v * v).sum::<f64>().sqrt() <= 1e-10 * (1.0 + f.abs()) {
            return Some((x, f));
        }
        let mut d: Vec<f64> = (0..n)
            .map(|i| -(0..n).map(|j| h[i * n + j] * g[j]).sum::<f64>())
            .collect();
        let mut slope: f64 = d.iter().zip(&g).map(|(d, g)| d * g).sum();
        if slope >= 0.0 {
            // Not a descent direction: restart from steepest descent.
            h = identity(n);
            d = g.iter().map(|v| -v).collect();
            slope = -g.iter().map(|v| v * v).sum::<f64>();
        }
        // At most one unit per coordinate per iteration: on a log scale a longer
        // jump lands where the special functions lose their precision.
        let longest = d.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let mut step = if longest > MAX_MOVE {
            MAX_MOVE / longest
        } else {
            1.0
        };
        let (mut xn, mut fnew, mut gn);
        loop {
            xn = x
                .iter()
                .zip(&d)
                .map(|(x, d)| x + step * d)
                .collect::<Vec<_>>();
            (fnew, gn) = fg(&xn);
            if fnew.is_finite() && fnew <= f + 1e-4 * step * slope {
                break;
            }
            step *= 0.5;
            if step < 1e-12 {
                return Some((x, f));
            }
        }
        let s: Vec<f64> = xn.iter().zip(&x).map(|(a, b)| a - b).collect();
        let y: Vec<f64> = gn.iter().zip(&g).map(|(a, b)| a - b).collect();
        let done = (f - fnew).abs() <= tol * (f.abs() + tol);
        (x, f, g) = (xn, fnew, gn);
        if done {
            return Some((x, f));
        }
        let sy: f64 = s.iter().zip(&y).map(|(s, y)| s * y).sum();
        if sy > 1e-300 {
            // H ← (I − ρ s yᵀ) H (I − ρ y sᵀ) + ρ s sᵀ
            let rho = 1.0 / sy;
            let hy: Vec<f64> = (0..n)
                .map(|i| (0..n).map(|j| h[i * n + j] * y[j]).sum())
                .collect();
            let yhy: f64 = y.iter().zip(&hy).map(|(y, hy)| y * hy).sum();
            for i in 0..n {
                for j in 0..n {
                    h[i * n + j] +=
                        (1.0 + rho * yhy) * rho * s[i] * s[j] - rho * (hy[i] * s[j] + s[i] * hy[j]);
                }
            }
        }
    }
    None
}

const MAX_MOVE: f64 = 1.0;

fn identity(n: usize) -> Vec<f64> {
    let mut h = vec![0.0; n * n];
    for i in 0..n {
        h[i * n + i] = 1.0;
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bfgs_finds_the_rosenbrock_minimum() {
        let fg = |p: &[f64]| {
            let (x, y) = (p[0], p[1]);
            (
                (1.0 - x).powi(2) + 100.0 * (y - x * x).powi(2),
                vec![
                    -2.0 * (1.0 - x) - 400.0 * x * (y - x * x),
                    200.0 * (y - x * x),
                ],
            )
        };
        let (x, v) = bfgs(fg, &[-1.2, 1.0], 1_000, 1e-15).expect("converges");
        assert!(v < 1e-10, "{v}");
        assert!(
            (x[0] - 1.0).abs() < 1e-4 && (x[1] - 1.0).abs() < 1e-4,
            "{x:?}"
        );
    }

    #[test]
    fn bfgs_refuses_a_start_where_the_value_is_not_finite() {
        assert!(bfgs(|_| (f64::NAN, vec![0.0]), &[0.0], 10, 1e-12).is_none());
    }

    #[test]
    fn finds_the_rosenbrock_minimum() {
        let rosen = |p: &[f64]| (1.0 - p[0]).powi(2) + 100.0 * (p[1] - p[0] * p[0]).powi(2);
        let (x, v) = nelder_mead(rosen, &[-1.2, 1.0], 0.5, 10_000, 1e-14);
        assert!(v < 1e-8, "{v}");
        assert!(
            (x[0] - 1.0).abs() < 1e-3 && (x[1] - 1.0).abs() < 1e-3,
            "{x:?}"
        );
    }
}
