#!/usr/bin/env python3
"""Reference parameter uncertainty: lifetimes' `summary` for BG/NBD and Gamma-Gamma.

Fits `lifetimes.BetaGeoFitter(penalizer_coef=0)` on every customer and
`lifetimes.GammaGammaFitter(penalizer_coef=0)` on the customers with x > 0 of a
customer summary CSV, and prints both fitters' `summary` tables, so a Rust test
can compare `bgnbd::standard_errors` / `gamma_gamma::standard_errors` with the
reference in the same run.

Usage: lifetimes_summary.py CSV

  CSV  customer summary with columns x (frequency), t_x (recency), T (age) and
       zbar (mean spend per repeat purchase), as
       services/segmentation/tests/fixtures/cdnow_summary.csv.

Prints a single JSON line on stdout:
  {"lifetimes_version", "customers", "repeat_customers",
   "bgnbd":        {"r"|"alpha"|"a"|"b": {"coef", "se", "lower_95", "upper_95"}},
   "gamma_gamma":  {"p"|"q"|"gamma":      {"coef", "se", "lower_95", "upper_95"}}}
with the Rust code's parameter names (lifetimes calls the Gamma-Gamma scale v).

What lifetimes 0.11.3 reports: se(coef) = sqrt(coef**2 * inv(H)[i, i] / N),
H the autograd Hessian of the *mean* negative log-likelihood with respect to the
*log* parameters at the optimum, N the number of customers (sum of weights);
the bounds are coef -/+ 1.96 * se.
"""

import contextlib
import json
import sys
import warnings

# Keep stdout for the JSON line only: silence library warnings before import.
warnings.simplefilter("ignore")

import lifetimes  # noqa: E402
import pandas as pd  # noqa: E402


def table(fitter, rename=None):
    s = fitter.summary
    rename = rename or {}
    return {
        rename.get(name, name): {
            "coef": float(row["coef"]),
            "se": float(row["se(coef)"]),
            "lower_95": float(row["lower 95% bound"]),
            "upper_95": float(row["upper 95% bound"]),
        }
        for name, row in s.iterrows()
    }


def main(argv):
    if len(argv) != 1 or argv[0].startswith("-"):
        print(__doc__, file=sys.stderr)
        return 2
    df = pd.read_csv(argv[0])
    repeat = df[df["x"] > 0]
    # lifetimes prints the optimizer result to stdout when a fit does not
    # converge; send that to stderr so stdout stays pure JSON.
    with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
        warnings.simplefilter("ignore")
        bg = lifetimes.BetaGeoFitter(penalizer_coef=0.0).fit(df["x"], df["t_x"], df["T"])
        gg = lifetimes.GammaGammaFitter(penalizer_coef=0.0).fit(repeat["x"], repeat["zbar"])
    print(
        json.dumps(
            {
                "lifetimes_version": lifetimes.__version__,
                "customers": int(len(df)),
                "repeat_customers": int(len(repeat)),
                "bgnbd": table(bg),
                "gamma_gamma": table(gg, rename={"v": "gamma"}),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
