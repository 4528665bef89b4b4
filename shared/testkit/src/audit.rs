//! Captures the audit records a service writes (the `audit` log target), for
//! tests that check who did what was recorded.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// One record's fields, as strings.
pub type AuditRecord = BTreeMap<String, String>;

/// The records written since the capture started (or since the last `take`).
#[derive(Clone, Default)]
pub struct AuditCapture(Arc<Mutex<Vec<AuditRecord>>>);

impl AuditCapture {
    /// Installs the capture as the process's global subscriber: call once, at the
    /// start of a test (nextest runs each test in its own process).
    pub fn install() -> AuditCapture {
        let capture = AuditCapture::default();
        tracing::subscriber::set_global_default(
            tracing_subscriber::registry().with(Recorder(capture.clone())),
        )
        .expect("no other global subscriber in this test process");
        capture
    }

    /// The records so far, emptying the capture.
    pub fn take(&self) -> Vec<AuditRecord> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

struct Recorder(AuditCapture);

struct Fields(AuditRecord);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().into(), format!("{value:?}"));
    }
}

impl<S: tracing::Subscriber> Layer<S> for Recorder {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if event.metadata().target() == "audit" {
            let mut f = Fields(AuditRecord::new());
            event.record(&mut f);
            (self.0)
                .0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(f.0);
        }
    }
}
