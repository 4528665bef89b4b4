//! Service tests of the win-back service on real PostgreSQL / Redis and SQLite,
//! with segmentation played by an in-test gRPC peer whose answers (and outages)
//! the tests choose.

mod audit;
mod campaigns;
mod churn;
mod harness;
mod migrate;
mod outcomes;
mod peer;
mod tls;
