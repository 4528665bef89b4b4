//! LaunchCampaign over a segment of 100,000 scored customers: win-back pages the
//! whole segment from segmentation over gRPC, applies the exclusions, draws the
//! holdout, spends the budget by CLV and writes targets and one OfferDispatched
//! per treated customer, in one transaction.

use std::time::{Duration, Instant};

use retention_proto::common::Money;
use retention_proto::segmentation as spb;
use retention_proto::segmentation::segmentation_service_client::SegmentationServiceClient;
use retention_proto::winback as wpb;
use retention_proto::winback::winback_service_client::WinbackServiceClient;
use retention_testkit::{mint_token, unique_namespace, with_token};
use sea_orm::Database;

use super::{endpoint, scoring, spawn, thousands};
use crate::table::Row;

pub async fn run(candidates: usize) -> anyhow::Result<Vec<Row>> {
    let ns = unique_namespace();
    let segmentation = spawn::<retention_segmentation::Segmentation>(&ns, |_| {}).await?;
    let db = Database::connect(segmentation.settings.database.url.as_str()).await?;
    scoring::populate(&db, candidates, false).await?;
    db.close().await?;
    let stoken = mint_token(
        &segmentation.settings,
        &[
            "segmentation.admin",
            "segmentation.read",
            "segmentation.write",
        ],
    );
    let mut seg = SegmentationServiceClient::new(segmentation.channel.clone());
    super::run_scoring(&mut seg, &stoken).await?;
    let segment = seg
        .create_segment(with_token(
            spb::CreateSegmentRequest {
                segment: Some(spb::Segment {
                    display_name: "Everyone who bought".into(),
                    filter: "purchases >= 1".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &stoken,
        ))
        .await?
        .into_inner();
    anyhow::ensure!(
        segment.member_count as usize == candidates,
        "segment has {} members",
        segment.member_count
    );

    let seg_url = endpoint(&segmentation)?;
    let winback = spawn::<retention_winback::Winback>(&ns, move |s| {
        s.winback.segmentation_endpoint = seg_url;
        // The target is measured here, not cut off by the server.
        s.server.request_timeout_ms = 120_000;
        // The populated customers carry no consent records: under the opt-out
        // policy all of them are contactable (consent is still read for each).
        s.consent = retention_config::ConsentSettings::all(retention_config::ConsentPolicy::OptOut);
    })
    .await?;
    let wtoken = mint_token(
        &winback.settings,
        &["winback.write", "winback.admin", "winback.read"],
    );
    let mut wb = WinbackServiceClient::new(winback.channel.clone());
    let campaign = wb
        .create_campaign(with_token(
            wpb::CreateCampaignRequest {
                campaign: Some(wpb::Campaign {
                    display_name: "Thank-you call to every buyer".into(),
                    kind: wpb::CampaignKind::Retention as i32,
                    strategy: wpb::Strategy::RelationshipInvestment as i32,
                    offer: Some(wpb::Offer {
                        kind: wpb::OfferKind::PersonalOutreach as i32,
                        description: "a call from the owner".into(),
                        cost: Some(Money {
                            currency_code: "CNY".into(),
                            minor_units: 0,
                        }),
                    }),
                    channel: "PHONE".into(),
                    target_segment: segment.name.clone(),
                    budget: Some(Money {
                        currency_code: "CNY".into(),
                        minor_units: 1_000_000_000,
                    }),
                    max_cost_share_of_value: 0.2,
                    holdout_share: 0.1,
                    seed: 7,
                    win_window_days: 30,
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &wtoken,
        ))
        .await?
        .into_inner();
    // Creating the segment published one membership event per member, which
    // win-back consumes in the background; the launch is measured once they are
    // through, so the figure is the launch's own work.
    super::outbox_drained(&segmentation).await?;
    super::settled(
        &winback,
        "SELECT count(*) FROM processed_events",
        |n| n >= candidates as i64,
        "membership events consumed",
    )
    .await?;
    let started = Instant::now();
    let mut launch = with_token(
        wpb::LaunchCampaignRequest {
            name: campaign.name.clone(),
            etag: campaign.etag.clone(),
        },
        &wtoken,
    );
    launch.set_timeout(Duration::from_secs(120));
    wb.launch_campaign(launch).await?;
    let took = started.elapsed();
    let targets = winback
        .count("SELECT count(*) FROM campaign_targets")
        .await?;
    println!(
        "LaunchCampaign over {candidates} candidates: {:.2} s, {targets} targets written",
        took.as_secs_f64()
    );
    anyhow::ensure!(
        targets as usize == candidates,
        "{targets} targets for {candidates}"
    );
    winback.stop().await?;
    segmentation.stop().await?;
    Ok(vec![
        Row::new(
            format!(
                "LaunchCampaign over {} candidates (segment paged over gRPC, 10 % holdout)",
                thousands(candidates as f64)
            ),
            format!("{:.2} s", took.as_secs_f64()),
        )
        .target("≤ 10 s", took <= Duration::from_secs(10)),
    ])
}
