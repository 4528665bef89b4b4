//! `retention-cli sla-report`: how the complaints opened in a period fared against
//! their SLA targets (GetSlaReport), as a table or as CSV for a spreadsheet.

use chrono::{DateTime, Utc};
use retention_proto::interactions as ipb;

use super::client::Clients;
use super::show::{Out, pct, table};

/// What the rows are per, as the command line names it.
pub const GROUPINGS: [&str; 5] = ["none", "priority", "tier", "assignee", "team"];

pub fn grouping(name: &str) -> ipb::SlaReportGrouping {
    use ipb::SlaReportGrouping as G;
    match name {
        "priority" => G::Priority,
        "tier" => G::CustomerTier,
        "assignee" => G::Assignee,
        "team" => G::Team,
        _ => G::Unspecified,
    }
}

/// The report of the complaints opened in [start, end).
pub async fn fetch(
    c: &Clients,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    group_by: ipb::SlaReportGrouping,
) -> anyhow::Result<ipb::SlaReport> {
    let ts = |t: DateTime<Utc>| prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    };
    Ok(c.interactions
        .clone()
        .get_sla_report(c.req(ipb::GetSlaReportRequest {
            start_time: Some(ts(start)),
            end_time: Some(ts(end)),
            group_by: group_by as i32,
        }))
        .await?
        .into_inner())
}

const COLUMNS: [&str; 15] = [
    "scope",
    "group",
    "complaints",
    "first_response_met",
    "first_response_breached",
    "first_response_in_progress",
    "first_response_met_share",
    "resolution_met",
    "resolution_breached",
    "resolution_in_progress",
    "resolution_met_share",
    "responded",
    "mean_first_response_minutes",
    "resolved",
    "mean_resolution_minutes",
];

/// A row's cells in [`COLUMNS`] order; shares and minutes unrounded.
fn cells(scope: &str, r: &ipb::SlaReportRow) -> Vec<String> {
    let fr = r.first_response.unwrap_or_default();
    let res = r.resolution.unwrap_or_default();
    vec![
        scope.to_string(),
        r.group.clone(),
        r.complaints.to_string(),
        fr.met.to_string(),
        fr.breached.to_string(),
        fr.in_progress.to_string(),
        fr.met_share.to_string(),
        res.met.to_string(),
        res.breached.to_string(),
        res.in_progress.to_string(),
        res.met_share.to_string(),
        r.responded.to_string(),
        r.mean_first_response_minutes.to_string(),
        r.resolved.to_string(),
        r.mean_resolution_minutes.to_string(),
    ]
}

/// RFC 4180: a field with a comma, quote or line break is quoted, quotes doubled.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The report as CSV: a header, a line per group (scope "group"), then the total
/// (scope "total"). An empty group is complaints without an assignee or team.
pub fn csv(r: &ipb::SlaReport) -> String {
    let mut lines = vec![COLUMNS.join(",")];
    let total = r.total.clone().unwrap_or_default();
    for (scope, row) in r
        .rows
        .iter()
        .map(|row| ("group", row))
        .chain([("total", &total)])
    {
        lines.push(
            cells(scope, row)
                .iter()
                .map(|c| csv_field(c))
                .collect::<Vec<_>>()
                .join(","),
        );
    }
    lines.join("\r\n") + "\r\n"
}

/// The report as a table: outcomes per target, % met of the settled ones, and
/// mean working hours to first response and to resolution.
pub fn print(r: &ipb::SlaReport, out: Out<'_>) {
    let total = r.total.clone().unwrap_or_default();
    out(&format!(
        "SLA report: {} complaints opened in the period\n",
        total.complaints
    ));
    let rows: Vec<Vec<String>> = r
        .rows
        .iter()
        .map(|row| (row.group.as_str(), row))
        .chain([("(all)", &total)])
        .map(|(label, row)| {
            let fr = row.first_response.unwrap_or_default();
            let res = row.resolution.unwrap_or_default();
            let label = if label.is_empty() { "(none)" } else { label };
            vec![
                label.to_string(),
                row.complaints.to_string(),
                format!("{}/{}/{}", fr.met, fr.breached, fr.in_progress),
                pct(fr.met_share),
                format!("{}/{}/{}", res.met, res.breached, res.in_progress),
                pct(res.met_share),
                format!("{:.1}", row.mean_first_response_minutes / 60.0),
                format!("{:.1}", row.mean_resolution_minutes / 60.0),
            ]
        })
        .collect();
    out(&table(
        &[
            "group",
            "complaints",
            "first response met/breached/open",
            "met",
            "resolution met/breached/open",
            "met",
            "h to first response",
            "h to resolution",
        ],
        &rows,
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_needs_it_and_ends_with_the_total() {
        let row = |group: &str, n| ipb::SlaReportRow {
            group: group.into(),
            complaints: n,
            first_response: Some(ipb::SlaTargetOutcomes {
                met: 1,
                breached: 1,
                in_progress: 0,
                met_share: 0.5,
            }),
            ..Default::default()
        };
        let r = ipb::SlaReport {
            rows: vec![row("", 1), row("Returns, \"east\"", 2)],
            total: Some(row("", 3)),
            ..Default::default()
        };
        let text = csv(&r);
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert_eq!(lines[0].split(',').count(), COLUMNS.len());
        assert!(lines[1].starts_with("group,,1,1,1,0,0.5,"), "{}", lines[1]);
        assert!(
            lines[2].starts_with("group,\"Returns, \"\"east\"\"\",2,"),
            "{}",
            lines[2]
        );
        assert!(lines[3].starts_with("total,,3,"), "{}", lines[3]);
        assert_eq!(lines[4], "");
    }
}
