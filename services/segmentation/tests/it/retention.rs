//! ProjectRetention: the shifted-beta-geometric model of contractual retention
//! (Fader & Hardie 2007, "How to project customer retention") over gRPC.

use retention_proto::segmentation as pb;
use retention_testkit::Backend;

use crate::harness::*;

fn cohort(survivors: &[f64]) -> pb::CohortSurvivors {
    pb::CohortSurvivors {
        survivors: survivors.to_vec(),
    }
}

#[tokio::test]
async fn the_papers_cohorts_give_the_published_fits_and_a_projection() {
    let mut app = TestApp::spawn(Backend::Sqlite).await;
    // Table 1 of the paper, years 0..7: "regular" and "high end" customers.
    for (survivors, alpha, beta) in [
        (
            [1000.0, 631.0, 468.0, 382.0, 326.0, 289.0, 262.0, 241.0],
            0.704,
            1.182,
        ),
        (
            [1000.0, 869.0, 743.0, 653.0, 593.0, 551.0, 517.0, 491.0],
            0.668,
            3.806,
        ),
    ] {
        let req = app.req(pb::ProjectRetentionRequest {
            cohorts: vec![cohort(&survivors)],
            periods: 12,
            discount_rate: 0.10,
        });
        let p = app
            .client
            .project_retention(req)
            .await
            .unwrap()
            .into_inner();
        assert!((p.alpha / alpha - 1.0).abs() < 0.01, "alpha {}", p.alpha);
        assert!((p.beta / beta - 1.0).abs() < 0.01, "beta {}", p.beta);
        assert_eq!(p.projection.len(), 12);
        for w in p.projection.windows(2) {
            assert!(w[1].survival < w[0].survival, "survival falls");
            assert!(
                w[1].retention_rate > w[0].retention_rate,
                "retention rises as the disloyal leave"
            );
            assert!(
                w[1].discounted_expected_residual_lifetime
                    > w[0].discounted_expected_residual_lifetime,
                "and those who stay are worth more"
            );
        }
        let expected = &p.expected[0].survivors;
        assert_eq!(expected.len(), 13);
        assert_eq!(expected[0], 1000.0);
        // The fit follows the data it saw: within 3 % in years 1..7.
        for (t, (e, s)) in expected.iter().zip(survivors).enumerate().skip(1) {
            assert!((e / s - 1.0).abs() < 0.03, "year {t}: {e} vs {s}");
        }
        assert!((p.projection[0].survival * 1000.0 - expected[1]).abs() < 1e-6);
    }
}

#[tokio::test]
async fn bad_cohorts_and_options_are_refused_by_field() {
    let mut app = TestApp::spawn(Backend::Sqlite).await;
    for (req, field) in [
        (
            pb::ProjectRetentionRequest::default(),
            "cohorts".to_string(),
        ),
        (
            pb::ProjectRetentionRequest {
                cohorts: vec![cohort(&[100.0, 80.0, 90.0])],
                ..Default::default()
            },
            "cohorts[0].survivors".into(),
        ),
        (
            pb::ProjectRetentionRequest {
                cohorts: vec![cohort(&[100.0, 80.0, 60.0]), cohort(&[0.0, 0.0])],
                ..Default::default()
            },
            "cohorts[1].survivors".into(),
        ),
        (
            pb::ProjectRetentionRequest {
                cohorts: vec![cohort(&[100.0, 80.0, 60.0])],
                periods: 5_000,
                ..Default::default()
            },
            "periods".into(),
        ),
        (
            pb::ProjectRetentionRequest {
                cohorts: vec![cohort(&[100.0, 80.0, 60.0])],
                discount_rate: -0.1,
                ..Default::default()
            },
            "discount_rate".into(),
        ),
        (
            // One period cannot tell alpha from beta: the fit refuses it.
            pb::ProjectRetentionRequest {
                cohorts: vec![cohort(&[100.0, 60.0])],
                ..Default::default()
            },
            "cohorts".into(),
        ),
    ] {
        let req = app.req(req);
        let status = app.client.project_retention(req).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert_eq!(violated_fields(&status), vec![field]);
    }
}
