//! The win-back service (in progress, DESIGN §1; DOMAIN §8-§9). So far: the pure
//! rules it runs on. Store, gRPC and events follow.

pub mod domain;
