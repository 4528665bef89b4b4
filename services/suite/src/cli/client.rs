//! Connections to the four services and the bearer token every call carries.

use std::time::Duration;

use retention_proto::interactions::interaction_service_client::InteractionServiceClient;
use retention_proto::profile::customer_profile_service_client::CustomerProfileServiceClient;
use retention_proto::segmentation::segmentation_service_client::SegmentationServiceClient;
use retention_proto::winback::winback_service_client::WinbackServiceClient;
use tonic::transport::{Channel, Endpoint};

/// Every scope of the suite: the CLI is an operator's tool (and `make run`'s
/// development token carries the same).
pub const SCOPES: &[&str] = &[
    "profile.read",
    "profile.write",
    "profile.admin",
    "pii.read",
    "interactions.read",
    "interactions.write",
    "interactions.admin",
    "segmentation.read",
    "segmentation.write",
    "segmentation.admin",
    "winback.read",
    "winback.write",
    "winback.admin",
    "audit.read",
];

#[derive(Debug, Clone)]
pub struct Endpoints {
    pub profile: String,
    pub interactions: String,
    pub segmentation: String,
    pub winback: String,
}

impl Default for Endpoints {
    /// The ports of `make run`.
    fn default() -> Self {
        Endpoints {
            profile: "http://127.0.0.1:50051".into(),
            interactions: "http://127.0.0.1:50052".into(),
            segmentation: "http://127.0.0.1:50053".into(),
            winback: "http://127.0.0.1:50054".into(),
        }
    }
}

#[derive(Clone)]
pub struct Clients {
    pub profile: CustomerProfileServiceClient<Channel>,
    pub interactions: InteractionServiceClient<Channel>,
    pub segmentation: SegmentationServiceClient<Channel>,
    pub winback: WinbackServiceClient<Channel>,
    token: String,
}

/// Connects, retrying for up to 20 s: the suite may still be starting (`make demo`
/// starts it and the CLI together).
async fn channel(url: &str) -> anyhow::Result<Channel> {
    let endpoint = Endpoint::from_shared(url.to_string())?
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(60));
    let mut last = String::new();
    for _ in 0..40 {
        match endpoint.connect().await {
            Ok(ch) => return Ok(ch),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    anyhow::bail!("cannot reach {url} ({last}); is the suite running (`make run`)?")
}

impl Clients {
    pub async fn connect(e: &Endpoints, token: String) -> anyhow::Result<Clients> {
        Ok(Clients {
            profile: CustomerProfileServiceClient::new(channel(&e.profile).await?),
            interactions: InteractionServiceClient::new(channel(&e.interactions).await?),
            segmentation: SegmentationServiceClient::new(channel(&e.segmentation).await?),
            winback: WinbackServiceClient::new(channel(&e.winback).await?),
            token,
        })
    }

    /// A token signed with the suite's secret (the development secret of `make run`
    /// unless configured), valid for a day.
    pub fn mint(secret: &str, issuer: &str, audience: &str) -> String {
        retention_auth::TokenMinter::hs256(secret.as_bytes(), issuer, audience).mint(
            "retention-cli",
            SCOPES,
            Duration::from_secs(24 * 3600),
        )
    }

    /// A request carrying the token.
    pub fn req<T>(&self, msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        if let Ok(v) = format!("Bearer {}", self.token).parse() {
            r.metadata_mut().insert("authorization", v);
        }
        r
    }
}
