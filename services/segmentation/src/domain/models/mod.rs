//! Probability models of customer behaviour: BG/NBD for "how many more purchases,
//! and is the customer still alive", Gamma-Gamma for "how much per purchase".

pub mod bgnbd;
pub mod gamma_gamma;
pub mod optimize;
pub mod sbg;
pub mod special;
pub mod uncertainty;

/// One customer's purchase history in the models' terms (time in any fixed unit,
/// e.g. weeks): `x` repeat purchases, the last at `t_x`, observed for `t` since the
/// first purchase.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct History {
    pub x: f64,
    pub t_x: f64,
    pub t: f64,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FitError {
    #[error("no customers to fit")]
    Empty,
    #[error("invalid history at row {row}: {reason}")]
    Invalid { row: usize, reason: String },
    #[error("the fit did not converge: {0}")]
    NoConvergence(String),
    /// Standard errors are undefined at the given parameters: the Hessian of the
    /// negative log-likelihood is not positive definite there (not a maximum, or
    /// parameters the data do not identify), or a parameter is not finite and positive.
    #[error("no standard errors: {0}")]
    NoStandardErrors(String),
}
