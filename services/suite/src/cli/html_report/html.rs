//! HTML pieces shared by the page's sections: escaping, tables, the embedded
//! JSON data blocks, the inline SVG and the style sheet (screen and print).

use serde::Serialize;

use super::ReportError;

type Result<T> = std::result::Result<T, ReportError>;

pub const STYLE: &str = r#"
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222; margin: 0 auto; max-width: 1400px; padding: 16px 24px; }
h1 { margin: 0 0 4px; font-size: 24px; }
h2 { margin: 28px 0 4px; font-size: 19px; border-bottom: 1px solid #ccc; padding-bottom: 3px; }
h3 { margin: 14px 0 4px; font-size: 15px; }
p.reading { margin: 2px 0 8px; font-style: italic; }
p.missing { margin: 6px 0; padding: 8px 10px; background: #fff6e0; border-left: 4px solid #e69500; }
.pair { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
.chart svg { max-width: 100%; height: auto; border: 1px solid #eee; }
table { border-collapse: collapse; font-size: 12px; }
th, td { padding: 2px 8px; border-bottom: 1px solid #e4e4e4; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f4f4f4; }
.meta td, .meta th { text-align: left; }
code { background: #f2f2f2; padding: 0 3px; }
@media print {
  body { max-width: none; padding: 0; font-size: 10pt; }
  section, .pair > div { break-inside: avoid; page-break-inside: avoid; }
  h2 { break-after: avoid; }
  .chart svg { border: none; }
  @page { margin: 12mm; }
}
"#;

/// Text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A section's data as a JSON block. Every "<" is written "\u003c" (the same
/// string to a JSON parser; in JSON it only occurs inside strings) so no value
/// can end the script element or open a comment in it.
pub fn data_block(id: &'static str, value: &impl Serialize) -> Result<String> {
    let json = serde_json::to_string(value)
        .map_err(|source| ReportError::Json {
            section: id,
            source,
        })?
        .replace('<', "\\u003c");
    Ok(format!(
        "<script type=\"application/json\" id=\"data-{id}\">{json}</script>\n"
    ))
}

/// plotters' SVG inline in HTML: the namespace declaration is implied there.
pub fn inline(svg: String) -> String {
    format!(
        "<div class=\"chart\">{}</div>",
        svg.replace(" xmlns=\"http://www.w3.org/2000/svg\"", "")
    )
}

/// A table; without headers (none given, or all blank) a list of labelled values.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut t = String::from("<table>");
    if headers.iter().any(|h| !h.is_empty()) {
        t.push_str("<thead><tr>");
        for h in headers {
            t.push_str(&format!("<th>{}</th>", escape(h)));
        }
        t.push_str("</tr></thead>");
    }
    t.push_str("<tbody>");
    for r in rows {
        t.push_str("<tr>");
        for c in r {
            t.push_str(&format!("<td>{}</td>", escape(c)));
        }
        t.push_str("</tr>");
    }
    t.push_str("</tbody></table>");
    t
}

/// A paragraph saying what is missing and which call fills it; `what` names it
/// for readers of the file (and tests).
pub fn missing(what: &str, text: &str) -> String {
    format!(
        "<p class=\"missing\" data-missing=\"{}\">{}</p>\n",
        escape(what),
        text
    )
}

pub fn reading(text: &str) -> String {
    format!("<p class=\"reading\">{}</p>\n", escape(text))
}

pub fn day(t: &str) -> String {
    t.get(..10).unwrap_or(t).to_string()
}
