//! The results table `make bench` prints and BENCHMARKS.md keeps.

use std::fmt::Write;

/// One figure beside its target.
#[derive(Debug, Clone)]
pub struct Row {
    pub benchmark: String,
    pub figure: String,
    pub target: String,
    /// None: a figure for orientation, with no target of its own.
    pub met: Option<bool>,
}

impl Row {
    pub fn new(benchmark: impl Into<String>, figure: impl Into<String>) -> Row {
        Row {
            benchmark: benchmark.into(),
            figure: figure.into(),
            target: String::new(),
            met: None,
        }
    }

    pub fn target(mut self, target: impl Into<String>, met: bool) -> Row {
        self.target = target.into();
        self.met = Some(met);
        self
    }
}

/// The rows as a Markdown table.
pub fn markdown(rows: &[Row]) -> String {
    let mut out = String::from("| benchmark | figure | target | met |\n|---|---|---|---|\n");
    for r in rows {
        let met = match r.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "",
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            r.benchmark, r.figure, r.target, met
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missed_target_stands_out() {
        let rows = [
            Row::new("echo", "50,000/s"),
            Row::new("get", "20,000/s").target("≥ 0.6 × echo", false),
            Row::new("copy", "1.0 s").target("≤ 2 s", true),
        ];
        let md = markdown(&rows);
        assert!(md.contains("| echo | 50,000/s |  |  |"));
        assert!(md.contains("| get | 20,000/s | ≥ 0.6 × echo | **no** |"));
        assert!(md.contains("| copy | 1.0 s | ≤ 2 s | yes |"));
    }
}
