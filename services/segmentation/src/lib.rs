//! The segmentation service (in progress, DESIGN §1; DOMAIN §2-§6). So far: the pure
//! statistical models it scores customers with. Store, gRPC and events follow.

pub mod domain;
