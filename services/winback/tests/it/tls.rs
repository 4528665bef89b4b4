//! Win-back over TLS: it reads segmentation over mutual TLS, its own listener
//! wants client certificates, and without its certificate segmentation refuses it.

use retention_proto::winback as pb;
use retention_testkit::{Backend, fixture_client_tls, fixture_server_tls};
use tonic::Code;

use crate::harness::*;

#[tokio::test]
async fn win_back_calls_segmentation_over_mutual_tls_and_without_its_certificate_is_refused() {
    let seg = Fake::default();
    let server = TestApp::spawn_segmentation(&seg, Some(fixture_server_tls(true))).await;
    let https = server.tls_endpoint();
    // Win-back's own listener wants client certificates too; the harness calls it
    // as the fixture client.
    let mut app = TestApp::spawn_configured(
        Backend::Sqlite,
        https.clone(),
        seg.clone(),
        Some(server),
        |s| {
            s.peer_tls = fixture_client_tls();
            s.server.tls = fixture_server_tls(true);
        },
    )
    .await;
    let (segment, ids) = app.segment(&[100_000, 90_000]);
    let c = app.create(TestApp::campaign(&segment)).await;
    app.launch(&c.name)
        .await
        .expect("a launch reading segmentation over mutual TLS");
    let targets = app.targets(&c.name).await;
    assert_eq!(targets.len(), ids.len(), "{targets:?}");
    assert!(
        seg.with(|s| s.last_authorization.is_some()),
        "the bearer token travels inside the TLS session"
    );
    // A plaintext caller does not reach win-back's listener.
    let plaintext = async {
        let ch = app.inner.service.as_ref().unwrap().channel().await?;
        retention_testkit::wait_until_serving(ch).await
    };
    let plaintext = tokio::time::timeout(std::time::Duration::from_secs(20), plaintext).await;
    assert!(
        !matches!(plaintext, Ok(Ok(()))),
        "plaintext reached a TLS listener"
    );

    // The same segmentation, called by a win-back holding no client certificate.
    let mut uncertified = TestApp::spawn_configured(Backend::Sqlite, https, seg, None, |s| {
        s.peer_tls = retention_config::PeerTlsSettings {
            cert_path: String::new(),
            key_path: String::new(),
            ..fixture_client_tls()
        };
    })
    .await;
    let (segment, _) = uncertified.segment(&[100_000]);
    let c = uncertified.create(TestApp::campaign(&segment)).await;
    let started = std::time::Instant::now();
    let err = uncertified.launch(&c.name).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    eprintln!(
        "without a client certificate: {:?} after {:?}",
        err.message(),
        started.elapsed()
    );
    assert_eq!(
        uncertified.get(&c.name).await.state,
        pb::CampaignState::Draft as i32
    );
    assert_eq!(uncertified.launch_traces().await, (0, 0, 0));
    uncertified.stop().await;
    app.stop().await;
}
