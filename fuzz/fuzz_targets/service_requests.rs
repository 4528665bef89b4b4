//! Any bytes as the body of any RPC of the suite: the four services run in this
//! process (embedded mode: SQLite, in-process cache and bus) and every input is
//! one call, its first byte choosing the method of the compiled contract and the
//! rest sent as the request message, undecoded, with a token holding every
//! scope. So every request validator sees arbitrary input through the real
//! decode and handler path.
//!
//! A crash is a panic anywhere in a service (libfuzzer aborts on any panic,
//! whatever task it happens in), a call still running at its 10 s deadline, or an INTERNAL
//! answer: bad input must get a clear error, never a server fault. The one
//! INTERNAL allowed is tonic's for bytes that are not a protobuf message at all,
//! which is the code the gRPC status-code guide assigns to an unparseable request.

#![no_main]

use std::sync::LazyLock;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use libfuzzer_sys::fuzz_target;
use retention_config::Settings;
use retention_server::host::Service;
use suite::SERVICES;
use tonic::Code;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;

#[path = "suite.rs"]
mod suite;

/// Sends the input bytes as they are and keeps the answer's bytes.
#[derive(Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = Raw;
    type Decoder = Raw;

    fn encoder(&mut self) -> Raw {
        Raw
    }

    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Bytes;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

struct Method {
    service: usize,
    path: PathAndQuery,
    client_streaming: bool,
    server_streaming: bool,
}

struct Fuzzed {
    suite: suite::Suite,
    methods: Vec<Method>,
    authorization: tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
}

fn contract() -> Vec<Method> {
    retention_proto::rpcs()
        .into_iter()
        .filter_map(|rpc| {
            let service = SERVICES
                .iter()
                .position(|s| rpc.service.starts_with(&format!("retention.{s}.v1.")))?;
            Some(Method {
                service,
                path: PathAndQuery::try_from(rpc.path).expect("a method path"),
                client_streaming: rpc.client_streaming,
                server_streaming: rpc.server_streaming,
            })
        })
        .collect()
}

static SUITE: LazyLock<Fuzzed> = LazyLock::new(|| {
    // Fresh databases each run, under the fuzz build's target directory.
    let suite = suite::start("service-requests-db", |_| {});
    let defaults = Settings::defaults("fuzz", 0);
    // Every scope any method of the four asks for.
    let policies = [
        retention_profile::Profile::scope_policy(),
        retention_interactions::Interactions::scope_policy(),
        retention_segmentation::Segmentation::scope_policy(),
        retention_winback::Winback::scope_policy(),
    ];
    let scopes: std::collections::BTreeSet<&str> = policies
        .iter()
        .flat_map(|p| p.methods().flat_map(|(_, s)| s.iter().map(String::as_str)))
        .collect();
    let scopes: Vec<&str> = scopes.into_iter().collect();
    let token = retention_auth::TokenMinter::hs256(
        defaults.auth.jwt_secret.as_bytes(),
        &defaults.auth.issuer,
        &defaults.auth.audience,
    )
    .mint("fuzzer", &scopes, Duration::from_secs(24 * 3600));
    Fuzzed {
        suite,
        methods: contract(),
        authorization: format!("Bearer {token}").parse().unwrap(),
    }
});

/// The deadline each call carries: a call still running then is a hang.
const CALL_DEADLINE: Duration = Duration::from_secs(10);

fn request<T>(suite: &Fuzzed, message: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    req.metadata_mut()
        .insert("authorization", suite.authorization.clone());
    req.set_timeout(CALL_DEADLINE);
    req
}

async fn call(suite: &Fuzzed, method: &Method, body: Bytes) -> Result<(), tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(suite.suite.channels[method.service].clone());
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let path = method.path.clone();
    let stream = || request(suite, tokio_stream::once(body.clone()));
    match (method.client_streaming, method.server_streaming) {
        (false, false) => grpc
            .unary(request(suite, body.clone()), path, Raw)
            .await
            .map(|_| ()),
        (true, false) => grpc.client_streaming(stream(), path, Raw).await.map(|_| ()),
        (_, true) => {
            let mut answers = if method.client_streaming {
                grpc.streaming(stream(), path, Raw).await?.into_inner()
            } else {
                grpc.server_streaming(request(suite, body.clone()), path, Raw)
                    .await?
                    .into_inner()
            };
            while answers.message().await?.is_some() {}
            Ok(())
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let suite = &*SUITE;
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let method = &suite.methods[pick as usize % suite.methods.len()];
    let body = Bytes::copy_from_slice(body);
    let started = std::time::Instant::now();
    let outcome = suite.suite.runtime.block_on(call(suite, method, body));
    // The deadline ends a hung call with DEADLINE_EXCEEDED, which a quick answer
    // may also legitimately be (a peer's deadline): the time tells them apart.
    if started.elapsed() >= CALL_DEADLINE {
        panic!(
            "{} ran into its {CALL_DEADLINE:?} deadline: {outcome:?}",
            method.path
        );
    }
    match outcome {
        Err(status)
            if status.code() == Code::Internal
                && !status
                    .message()
                    .starts_with("failed to decode Protobuf message") =>
        {
            panic!("{} answered INTERNAL: {status:?}", method.path)
        }
        _ => {}
    }
});
