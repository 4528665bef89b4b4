#!/usr/bin/env python3
"""Python baseline for the BG/NBD fit benchmark.

The Rust benchmark (`make bench`) fits its own BG/NBD model and, in the same
run, calls this script so both numbers come from one machine under the same
load. Here the reference implementation, `lifetimes.BetaGeoFitter`, is fitted
on the same customer summary CSV (columns ID, x, t_x, T, zbar: frequency,
recency, age, mean spend).

Usage: bench_lifetimes.py CSV [--repeat N]

Prints a single JSON line on stdout:
  {"r", "alpha", "a", "b", "best_seconds", "median_seconds", "customers",
   "lifetimes_version"}
The timings cover only the `.fit(...)` call, repeated N times (default 5).
"""

import argparse
import contextlib
import json
import statistics
import sys
import time
import warnings

# Keep stdout for the JSON line only: silence library warnings before import.
warnings.simplefilter("ignore")

import lifetimes  # noqa: E402
import pandas as pd  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description="Time lifetimes.BetaGeoFitter on a summary CSV.")
    parser.add_argument("csv", help="CSV with columns x (frequency), t_x (recency), T (age)")
    parser.add_argument("--repeat", type=int, default=5, help="number of timed fits (default 5)")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    df = pd.read_csv(args.csv)
    frequency = df["x"].to_numpy()
    recency = df["t_x"].to_numpy()
    age = df["T"].to_numpy()

    times = []
    fitter = None
    for _ in range(args.repeat):
        fitter = lifetimes.BetaGeoFitter(penalizer_coef=0.0)
        # lifetimes prints the optimizer result to stdout when it fails to
        # converge; send that to stderr so stdout stays pure JSON.
        with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
            warnings.simplefilter("ignore")
            start = time.perf_counter()
            fitter.fit(frequency, recency, age)
            times.append(time.perf_counter() - start)

    params = fitter.params_
    result = {
        "r": float(params["r"]),
        "alpha": float(params["alpha"]),
        "a": float(params["a"]),
        "b": float(params["b"]),
        "best_seconds": min(times),
        "median_seconds": statistics.median(times),
        "customers": int(len(df)),
        "lifetimes_version": lifetimes.__version__,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
