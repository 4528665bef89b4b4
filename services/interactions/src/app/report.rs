//! The SLA report, read page by page so a period of any size fits in memory.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::*;

/// Complaints per page of the report's read.
const PAGE: u64 = 1000;

impl InteractionsApp {
    /// How the complaints opened in [start, end) fared against their targets as
    /// of `as_of`, per `grouping`. Each complaint's times count in the calendar
    /// its policy named when it was opened.
    pub async fn sla_report(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        grouping: SlaGrouping,
        as_of: DateTime<Utc>,
    ) -> AppResult<SlaReport> {
        let mut report = SlaReportBuilder::new(grouping, as_of);
        let mut calendars: HashMap<String, BusinessCalendar> = HashMap::new();
        let mut after = None;
        loop {
            let page = repo::complaints_opened_page(&self.db, start, end, after, PAGE).await?;
            for c in &page {
                let calendar = match &c.calendar_id {
                    Some(id) => {
                        if !calendars.contains_key(id) {
                            let cal = self.business_calendar(&self.db, id).await?;
                            calendars.insert(id.clone(), cal);
                        }
                        calendars.get(id)
                    }
                    None => None,
                };
                report.add(c, calendar);
            }
            match page.last() {
                Some(c) if page.len() as u64 == PAGE => after = Some((c.open_time, c.id.clone())),
                _ => return Ok(report.finish()),
            }
        }
    }
}
