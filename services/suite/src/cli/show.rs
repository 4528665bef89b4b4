//! Readable output: aligned tables and a progress bar on stderr.

use std::io::Write;

/// Where command output goes (stdout in the binary, a buffer in tests).
pub type Out<'a> = &'a mut dyn FnMut(&str);

/// Columns padded to their widest cell; numbers right-aligned.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let numeric = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | '%' | ',' | ' '))
    };
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let pad = widths[i].saturating_sub(c.chars().count());
                if numeric(c) {
                    format!("{}{c}", " ".repeat(pad))
                } else {
                    format!("{c}{}", " ".repeat(pad))
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = vec![
        line(headers.to_vec()),
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .join("  "),
    ];
    out.extend(
        rows.iter()
            .map(|r| line(r.iter().map(String::as_str).collect())),
    );
    out.join("\n") + "\n"
}

pub fn money(minor: i64) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let m = minor.unsigned_abs();
    format!("{sign}{}.{:02}", group(m / 100), m % 100)
}

fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

pub fn pct(x: f64) -> String {
    if x.is_finite() {
        format!("{:.1}%", x * 100.0)
    } else {
        "n/a".into()
    }
}

/// A progress bar redrawn in place on stderr (silent when `quiet`).
pub struct Progress {
    label: String,
    total: u64,
    quiet: bool,
}

/// Whether progress is drawn: not when asked to be quiet, and only on a terminal
/// (a carriage-return bar in a log file or a pipe is noise).
pub fn draws_progress(quiet: bool, on_terminal: bool) -> bool {
    !quiet && on_terminal
}

/// Whether standard error, where progress goes, is a terminal.
pub fn stderr_is_terminal() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal()
}

impl Progress {
    /// A bar on standard error, drawn only on a terminal and unless `quiet`.
    pub fn new(label: &str, total: u64, quiet: bool) -> Progress {
        Progress {
            label: label.into(),
            total: total.max(1),
            quiet: !draws_progress(quiet, stderr_is_terminal()),
        }
    }

    pub fn set(&self, done: u64) {
        if self.quiet {
            return;
        }
        let frac = (done as f64 / self.total as f64).clamp(0.0, 1.0);
        let filled = (frac * 30.0).round() as usize;
        let mut err = std::io::stderr();
        let _ = write!(
            err,
            "\r{:<28} [{}{}] {:>3.0}% ({done}/{})",
            self.label,
            "#".repeat(filled),
            ".".repeat(30 - filled),
            frac * 100.0,
            self.total
        );
        let _ = err.flush();
    }

    pub fn finish(&self) {
        if !self.quiet {
            self.set(self.total);
            eprintln!();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_is_drawn_only_on_a_terminal_and_when_not_quiet() {
        assert!(draws_progress(false, true));
        assert!(!draws_progress(false, false), "not into a log or a pipe");
        assert!(!draws_progress(true, true));
        assert!(!draws_progress(true, false));
    }

    #[test]
    fn tables_align_text_left_and_numbers_right() {
        let t = table(
            &["level", "customers", "share"],
            &[
                vec!["PLATINUM".into(), "5".into(), pct(0.412)],
                vec!["LEAD".into(), "120".into(), pct(-0.03)],
            ],
        );
        assert_eq!(
            t,
            "level     customers  share\n\
             --------  ---------  -----\n\
             PLATINUM          5  41.2%\n\
             LEAD            120  -3.0%\n"
        );
    }

    #[test]
    fn money_is_grouped_minor_units() {
        assert_eq!(money(123_456_789), "1,234,567.89");
        assert_eq!(money(-5), "-0.05");
        assert_eq!(pct(f64::NAN), "n/a");
    }
}
