//! The suite as a product: the all-in-one embedded runner (`retention`, src/main.rs)
//! and the operator's CLI (`retention-cli`), whose commands live here so tests can
//! drive them against running services.

pub mod cli;
