//! The BG/NBD fit on the CDNOW sample against the Python `lifetimes` library
//! fitting the same file in the same run (`scripts/bench_lifetimes.py`).

use std::path::PathBuf;
use std::time::Instant;

use retention_segmentation::domain::models::{History, bgnbd};

use crate::table::Row;

/// The CDNOW summary the segmentation tests use (ID, x, t_x, T, mean spend).
pub fn cdnow_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../services/segmentation/tests/fixtures/cdnow_summary.csv")
}

fn load() -> anyhow::Result<Vec<History>> {
    let text = std::fs::read_to_string(cdnow_path())?;
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let f: Vec<f64> = line
                .split(',')
                .map(|v| v.trim().parse())
                .collect::<Result<_, _>>()?;
            anyhow::ensure!(f.len() >= 4, "short row: {line}");
            Ok(History {
                x: f[1],
                t_x: f[2],
                t: f[3],
            })
        })
        .collect()
}

/// Equal when rounded to three significant digits.
pub fn sig3(a: f64, b: f64) -> bool {
    let digits = |v: f64| {
        let scale = 10f64.powf(v.abs().log10().floor() - 2.0);
        (v / scale).round() * scale
    };
    (digits(a) - digits(b)).abs() <= 1e-12 * a.abs().max(b.abs())
}

#[derive(Debug)]
struct Python {
    r: f64,
    alpha: f64,
    a: f64,
    b: f64,
    best_seconds: f64,
    version: String,
}

fn python(repeat: u32) -> anyhow::Result<Python> {
    let exe = std::env::var("BENCH_PYTHON").unwrap_or_else(|_| {
        format!(
            "{}/.cache/retention-bench-venv/bin/python",
            std::env::var("HOME").unwrap_or_default()
        )
    });
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/bench_lifetimes.py");
    let out = std::process::Command::new(&exe)
        .arg(script)
        .arg(cdnow_path())
        .args(["--repeat", &repeat.to_string()])
        .output()
        .map_err(|e| anyhow::anyhow!("{exe}: {e} (make bench-tools installs it)"))?;
    anyhow::ensure!(
        out.status.success(),
        "bench_lifetimes.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let num = |k: &str| {
        v[k].as_f64()
            .ok_or_else(|| anyhow::anyhow!("no {k} in {v}"))
    };
    Ok(Python {
        r: num("r")?,
        alpha: num("alpha")?,
        a: num("a")?,
        b: num("b")?,
        best_seconds: num("best_seconds")?,
        version: v["lifetimes_version"].as_str().unwrap_or("?").to_string(),
    })
}

pub fn run() -> anyhow::Result<Vec<Row>> {
    let data = load()?;
    let py = python(5)?;
    let mut best = f64::MAX;
    let mut fit = None;
    for _ in 0..20 {
        let started = Instant::now();
        let f = bgnbd::fit(&data)?;
        best = best.min(started.elapsed().as_secs_f64());
        fit = Some(f);
    }
    let p = fit
        .map(|f| f.params)
        .ok_or_else(|| anyhow::anyhow!("no fit"))?;
    let equal = sig3(p.r, py.r) && sig3(p.alpha, py.alpha) && sig3(p.a, py.a) && sig3(p.b, py.b);
    let speedup = py.best_seconds / best;
    println!(
        "CDNOW fit ({} customers): ours r {:.4} alpha {:.4} a {:.4} b {:.4} in {:.2} ms; \
         lifetimes {} r {:.4} alpha {:.4} a {:.4} b {:.4} in {:.2} ms",
        data.len(),
        p.r,
        p.alpha,
        p.a,
        p.b,
        best * 1e3,
        py.version,
        py.r,
        py.alpha,
        py.a,
        py.b,
        py.best_seconds * 1e3
    );
    Ok(vec![
        Row::new(
            format!(
                "BG/NBD fit, CDNOW ({} customers), Python lifetimes {}",
                data.len(),
                py.version
            ),
            format!(
                "{:.1} ms: r {:.3}, α {:.3}, a {:.3}, b {:.3}",
                py.best_seconds * 1e3,
                py.r,
                py.alpha,
                py.a,
                py.b
            ),
        ),
        Row::new(
            "BG/NBD fit, CDNOW: ours",
            format!(
                "{:.2} ms = {speedup:.0}× faster: r {:.3}, α {:.3}, a {:.3}, b {:.3}",
                best * 1e3,
                p.r,
                p.alpha,
                p.a,
                p.b
            ),
        )
        .target(
            "≥ 20× faster, parameters equal to 3 significant digits",
            speedup >= 20.0 && equal,
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::sig3;

    #[test]
    fn three_significant_digits() {
        assert!(sig3(0.24259, 0.24261));
        assert!(sig3(4.4135, 4.4139));
        assert!(!sig3(0.241, 0.246));
        assert!(!sig3(2.42, 2.44));
    }
}
