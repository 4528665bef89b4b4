#!/usr/bin/env python3
"""Reference backtest: lifetimes' calibration/holdout comparison of BG/NBD.

Reads a CDNOW-format order file (whitespace-separated: customer id, sample id,
date YYYYMMDD, quantity, amount), splits it with
`lifetimes.utils.calibration_and_holdout_data` (freq "D": the orders of one
customer-day are one purchase occasion), fits `BetaGeoFitter(penalizer_coef=0)`
on the calibration period and predicts each customer's repeat purchases in the
holdout with `conditional_expected_number_of_purchases_up_to_time`.

Usage: lifetimes_backtest.py ORDERS CALIBRATION_END OBSERVATION_END
  e.g. lifetimes_backtest.py CDNOW_sample.txt 1997-09-30 1998-06-30

Prints one JSON line: {"lifetimes_version", "customers", "holdout_days",
"params": {"r", "alpha", "a", "b"} (time in days), "predicted_total",
"actual_total", "mae", "rmse", "by_frequency": [{"calibration_repeats",
"and_more", "customers", "mean_actual", "mean_predicted"}, ...]} with buckets
0..6 and 7 or more, as the paper's Figure 4.
"""

import contextlib
import io
import json
import sys

import numpy as np
import pandas as pd

with contextlib.redirect_stderr(io.StringIO()):
    import lifetimes
    from lifetimes import BetaGeoFitter
    from lifetimes.utils import calibration_and_holdout_data


def main(path, calibration_end, observation_end):
    rows = []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if parts:
                rows.append((parts[0], pd.Timestamp(parts[2])))
    orders = pd.DataFrame(rows, columns=["customer", "date"])
    data = calibration_and_holdout_data(
        orders,
        "customer",
        "date",
        calibration_period_end=calibration_end,
        observation_period_end=observation_end,
        freq="D",
    )
    bgf = BetaGeoFitter(penalizer_coef=0.0)
    bgf.fit(data["frequency_cal"], data["recency_cal"], data["T_cal"])
    duration = float(data["duration_holdout"].iloc[0])
    predicted = bgf.conditional_expected_number_of_purchases_up_to_time(
        duration, data["frequency_cal"], data["recency_cal"], data["T_cal"]
    )
    actual = data["frequency_holdout"]
    buckets = []
    for k in range(8):
        mask = data["frequency_cal"] >= 7 if k == 7 else data["frequency_cal"] == k
        n = int(mask.sum())
        buckets.append(
            {
                "calibration_repeats": k,
                "and_more": k == 7,
                "customers": n,
                "mean_actual": float(actual[mask].mean()) if n else 0.0,
                "mean_predicted": float(predicted[mask].mean()) if n else 0.0,
            }
        )
    p = bgf.params_
    print(
        json.dumps(
            {
                "lifetimes_version": lifetimes.__version__,
                "customers": int(len(data)),
                "holdout_days": duration,
                "params": {k: float(p[k]) for k in ("r", "alpha", "a", "b")},
                "predicted_total": float(predicted.sum()),
                "actual_total": float(actual.sum()),
                "mae": float(np.abs(predicted - actual).mean()),
                "rmse": float(np.sqrt(((predicted - actual) ** 2).mean())),
                "by_frequency": buckets,
            }
        )
    )


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], sys.argv[3])
