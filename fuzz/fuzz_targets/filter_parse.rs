//! Any bytes as a filter expression: parsing never panics, never accepts more
//! than the limits allow, and what it accepts prints to a filter that parses
//! back to the same tree.

#![no_main]

use libfuzzer_sys::fuzz_target;
use retention_filter::{Limits, parse, parse_with_limits};

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(expr) = parse(src) else {
        return;
    };
    let limits = Limits::default();
    assert!(src.len() <= limits.max_len);
    assert!(expr.node_count() <= limits.max_nodes);
    let printed = expr.to_string();
    let roomy = Limits {
        max_len: 1 << 20,
        ..Limits::default()
    };
    assert_eq!(parse_with_limits(&printed, &roomy), Ok(expr), "{printed}");
});
