//! Generated protobuf types and gRPC stubs for every `retention.*.v1` package, plus
//! the file descriptor set that server reflection serves.

#![allow(clippy::all, clippy::pedantic)]

pub mod retention {
    pub mod common {
        pub mod v1 {
            tonic::include_proto!("retention.common.v1");
        }
    }
    pub mod profile {
        pub mod v1 {
            tonic::include_proto!("retention.profile.v1");
        }
    }
    pub mod interactions {
        pub mod v1 {
            tonic::include_proto!("retention.interactions.v1");
        }
    }
    pub mod segmentation {
        pub mod v1 {
            tonic::include_proto!("retention.segmentation.v1");
        }
    }
    pub mod winback {
        pub mod v1 {
            tonic::include_proto!("retention.winback.v1");
        }
    }
}

pub use retention::common::v1 as common;
pub use retention::interactions::v1 as interactions;
pub use retention::profile::v1 as profile;
pub use retention::segmentation::v1 as segmentation;
pub use retention::winback::v1 as winback;

/// Encoded `FileDescriptorSet` of all suite protos, for tonic-reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("retention_descriptor");

/// One RPC of the compiled contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rpc {
    /// The fully qualified service, e.g. "retention.profile.v1.CustomerProfileService".
    pub service: String,
    /// The HTTP/2 path, "/{service}/{method}".
    pub path: String,
    pub client_streaming: bool,
    pub server_streaming: bool,
}

/// Every RPC of every service in [`FILE_DESCRIPTOR_SET`], in declaration order:
/// what tests and fuzzers walk to cover each method the contract has.
pub fn rpcs() -> Vec<Rpc> {
    use prost::Message;
    let set = prost_types::FileDescriptorSet::decode(FILE_DESCRIPTOR_SET)
        .expect("the compiled descriptor set decodes");
    let mut out = Vec::new();
    for file in &set.file {
        for service in &file.service {
            let full = format!("{}.{}", file.package(), service.name());
            for method in &service.method {
                out.push(Rpc {
                    service: full.clone(),
                    path: format!("/{full}/{}", method.name()),
                    client_streaming: method.client_streaming(),
                    server_streaming: method.server_streaming(),
                });
            }
        }
    }
    out
}

/// Packs a message into `google.protobuf.Any` with the standard type URL, so event
/// payloads decode with any protobuf runtime.
pub fn pack_any<M: prost::Name>(msg: &M) -> prost_types::Any {
    prost_types::Any {
        type_url: M::type_url(),
        value: prost::Message::encode_to_vec(msg),
    }
}

/// The fully qualified name consumers see in `EventEnvelope.event_type`.
pub fn full_name<M: prost::Name>() -> String {
    M::full_name()
}
