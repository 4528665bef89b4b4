//! Closed vocabularies of the interactions context (DOMAIN §6, §7).

use retention_domain::domain_enum;

domain_enum!(Channel {
    Phone = "PHONE",
    Email = "EMAIL",
    Chat = "CHAT",
    WebForm = "WEB_FORM",
    InPerson = "IN_PERSON",
    Social = "SOCIAL",
    Hotline = "HOTLINE",
    SuggestionBox = "SUGGESTION_BOX",
});
domain_enum!(Direction { Inbound = "INBOUND", Outbound = "OUTBOUND" });
domain_enum!(CommunicationKind {
    Information = "INFORMATION",
    Emotion = "EMOTION",
    Idea = "IDEA",
    Opinion = "OPINION",
});
domain_enum!(PurchasePhase { Before = "BEFORE", During = "DURING", After = "AFTER" });
domain_enum!(ComplaintState {
    Open = "OPEN",
    Acknowledged = "ACKNOWLEDGED",
    InProgress = "IN_PROGRESS",
    Resolved = "RESOLVED",
    Closed = "CLOSED",
    WaitingOnCustomer = "WAITING_ON_CUSTOMER",
});
domain_enum!(ComplaintCategory {
    ProductQuality = "PRODUCT_QUALITY",
    Price = "PRICE",
    ServiceAttitude = "SERVICE_ATTITUDE",
    Delivery = "DELIVERY",
    Billing = "BILLING",
    IgnoredCustomer = "IGNORED_CUSTOMER",
    CompanyImage = "COMPANY_IMAGE",
    Other = "OTHER",
});
domain_enum!(Severity { Low = "LOW", Medium = "MEDIUM", High = "HIGH", Critical = "CRITICAL" });
domain_enum!(Priority { Low = "LOW", Normal = "NORMAL", High = "HIGH", Urgent = "URGENT" });
domain_enum!(
    /// The five service gaps behind dissatisfaction (DOMAIN §6).
    ServiceGap {
        Promotion = "PROMOTION",
        Understanding = "UNDERSTANDING",
        Procedure = "PROCEDURE",
        Behaviour = "BEHAVIOUR",
        Perception = "PERCEPTION",
    }
);
domain_enum!(
    /// Management tier (DOMAIN §4); key accounts get tighter SLA targets.
    CustomerTier { Key = "KEY", Suitable = "SUITABLE", Ordinary = "ORDINARY", OneOff = "ONE_OFF" }
);
domain_enum!(ResolutionOutcome {
    Fixed = "FIXED",
    Compensated = "COMPENSATED",
    Explained = "EXPLAINED",
    Rejected = "REJECTED",
    Withdrawn = "WITHDRAWN",
});
domain_enum!(SlaTarget {
    FirstResponse = "FIRST_RESPONSE",
    Resolution = "RESOLUTION",
    NextResponse = "NEXT_RESPONSE",
});
