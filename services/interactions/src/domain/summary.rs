//! The satisfaction summary: pure arithmetic over surveys and complaints.

use std::collections::BTreeMap;

use super::complaint::Complaint;
use super::enums::*;
use super::records::Survey;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct SatisfactionSummary {
    pub survey_count: i64,
    pub csat_mean: f64,
    pub csat_satisfied_share: f64,
    /// Promoters (9-10) minus detractors (0-6), percent points.
    pub nps: f64,
    pub mean_expectation_gap: f64,
    pub complaint_count: i64,
    pub by_category: BTreeMap<&'static str, (ComplaintCategory, i64)>,
    pub by_service_gap: BTreeMap<&'static str, (ServiceGap, i64)>,
    /// Of complaints whose SLA outcome is known (resolved, or breached), the share
    /// that met both targets.
    pub sla_compliance_rate: f64,
    pub mean_time_to_resolve_hours: f64,
}

fn mean(xs: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = xs.fold((0.0, 0u64), |(s, n), x| (s + x, n + 1));
    if n == 0 { 0.0 } else { sum / n as f64 }
}

pub fn summarize(surveys: &[Survey], complaints: &[Complaint]) -> SatisfactionSummary {
    let csat: Vec<i32> = surveys.iter().filter_map(|s| s.csat).collect();
    let nps: Vec<i32> = surveys.iter().filter_map(|s| s.nps).collect();
    let nps_score = if nps.is_empty() {
        0.0
    } else {
        let promoters = nps.iter().filter(|n| **n >= 9).count() as f64;
        let detractors = nps.iter().filter(|n| **n <= 6).count() as f64;
        (promoters - detractors) * 100.0 / nps.len() as f64
    };
    let mut by_category = BTreeMap::new();
    let mut by_service_gap = BTreeMap::new();
    for c in complaints {
        by_category
            .entry(c.category.as_str())
            .or_insert((c.category, 0))
            .1 += 1;
        if let Some(gap) = c.resolution.as_ref().and_then(|r| r.service_gap) {
            by_service_gap.entry(gap.as_str()).or_insert((gap, 0)).1 += 1;
        }
    }
    let known: Vec<&Complaint> = complaints
        .iter()
        .filter(|c| c.resolution.is_some() || c.first_response_breached || c.resolution_breached)
        .collect();
    let compliant = known
        .iter()
        .filter(|c| !c.first_response_breached && !c.resolution_breached)
        .count();
    SatisfactionSummary {
        survey_count: surveys.len() as i64,
        csat_mean: mean(csat.iter().map(|c| f64::from(*c))),
        csat_satisfied_share: if csat.is_empty() {
            0.0
        } else {
            csat.iter().filter(|c| **c >= 4).count() as f64 / csat.len() as f64
        },
        nps: nps_score,
        mean_expectation_gap: mean(
            surveys
                .iter()
                .filter_map(Survey::expectation_gap)
                .map(f64::from),
        ),
        complaint_count: complaints.len() as i64,
        by_category,
        by_service_gap,
        sla_compliance_rate: if known.is_empty() {
            0.0
        } else {
            compliant as f64 / known.len() as f64
        },
        mean_time_to_resolve_hours: mean(complaints.iter().filter_map(|c| {
            let r = c.resolution.as_ref()?;
            Some((r.resolve_time - c.open_time).num_seconds() as f64 / 3600.0)
        })),
    }
}
