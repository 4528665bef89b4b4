//! The seeds' customer classifications (DOMAIN §2, §4-§6) as pure functions, each
//! with its thresholds in a config struct: the documents' numbers are defaults,
//! never hard-wired.

use retention_domain::domain_enum;

domain_enum!(RfmSegment {
    Champions = "CHAMPIONS",
    LoyalCustomers = "LOYAL_CUSTOMERS",
    PotentialLoyalists = "POTENTIAL_LOYALISTS",
    NewCustomers = "NEW_CUSTOMERS",
    NeedAttention = "NEED_ATTENTION",
    AboutToSleep = "ABOUT_TO_SLEEP",
    AtRisk = "AT_RISK",
    CannotLoseThem = "CANNOT_LOSE_THEM",
    Hibernating = "HIBERNATING",
    Lost = "LOST",
});
domain_enum!(
    /// Customer pyramid by value (DOMAIN §4).
    ValueTier { Platinum = "PLATINUM", Gold = "GOLD", Iron = "IRON", Lead = "LEAD" }
);
domain_enum!(
    /// Management tiers (DOMAIN §4).
    ManagementTier { Key = "KEY", Suitable = "SUITABLE", Ordinary = "ORDINARY", OneOff = "ONE_OFF" }
);
domain_enum!(
    /// Relationship lifecycle (DOMAIN §2) plus the end of the relationship.
    LifecycleStage {
        Exploration = "EXPLORATION",
        Growth = "GROWTH",
        Stability = "STABILITY",
        Decline = "DECLINE",
        Terminated = "TERMINATED",
    }
);
domain_enum!(
    /// Loyalty ladder (DOMAIN §6).
    LoyaltyStage {
        Prospect = "PROSPECT",
        Customer = "CUSTOMER",
        Client = "CLIENT",
        Advocate = "ADVOCATE",
        Partner = "PARTNER",
    }
);
domain_enum!(
    /// Size by annual revenue (DOMAIN §5).
    SizeTier { Large = "LARGE", Medium = "MEDIUM", Small = "SMALL", Sporadic = "SPORADIC" }
);
domain_enum!(
    /// Share-of-wallet stability (DOMAIN §5).
    WalletStability {
        Stable = "STABLE",
        BasicallyStable = "BASICALLY_STABLE",
        Unstable = "UNSTABLE",
        VeryUnstable = "VERY_UNSTABLE",
    }
);
domain_enum!(
    /// Cheverton's key-account selection matrix (DOMAIN §4).
    AccountQuadrant {
        Key = "KEY",
        KeyDevelopment = "KEY_DEVELOPMENT",
        Maintenance = "MAINTENANCE",
        Opportunistic = "OPPORTUNISTIC",
    }
);

// ---- RFM ------------------------------------------------------------------------

/// Quintile score 1..=5 of each value in `values` (5 = best). Ranks are shared by
/// ties, so equal inputs always get equal scores.
pub fn quintiles(values: &[f64], higher_is_better: bool) -> Vec<u8> {
    let n = values.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut scores = vec![0u8; n];
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && values[order[j + 1]] == values[order[i]] {
            j += 1;
        }
        // Average rank of the tie group, as a fraction of the population.
        let mid = (i + j) as f64 / 2.0 + 0.5;
        let q = ((mid / n as f64) * 5.0).ceil().clamp(1.0, 5.0) as u8;
        let score = if higher_is_better { q } else { 6 - q };
        for k in i..=j {
            scores[order[k]] = score;
        }
        i = j + 1;
    }
    scores
}

/// The usual RFM grid on recency and frequency scores.
pub fn rfm_segment(r: u8, f: u8) -> RfmSegment {
    let frequent = f >= 4;
    match r {
        4..=5 if frequent => RfmSegment::Champions,
        3..=5 if f >= 3 => RfmSegment::LoyalCustomers,
        4..=5 if f <= 1 => RfmSegment::NewCustomers,
        4..=5 => RfmSegment::PotentialLoyalists,
        3 => RfmSegment::NeedAttention,
        2 if frequent => RfmSegment::AtRisk,
        2 => RfmSegment::AboutToSleep,
        _ if frequent => RfmSegment::CannotLoseThem,
        _ if f >= 2 => RfmSegment::Hibernating,
        _ => RfmSegment::Lost,
    }
}

// ---- value pyramid and management tiers ---------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PyramidConfig {
    /// Share of customers, by profit rank, that are platinum (then gold).
    pub platinum_share: f64,
    pub gold_share: f64,
    /// Profit at or below this is lead (unprofitable).
    pub lead_max_profit: i64,
}

impl Default for PyramidConfig {
    fn default() -> Self {
        PyramidConfig {
            platinum_share: 0.05,
            gold_share: 0.15,
            lead_max_profit: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TierConfig {
    pub key_share: f64,
    pub suitable_share: f64,
    /// Customers with at most this many purchases are one-off.
    pub one_off_max_purchases: u32,
}

impl Default for TierConfig {
    fn default() -> Self {
        TierConfig {
            key_share: 0.05,
            suitable_share: 0.15,
            one_off_max_purchases: 1,
        }
    }
}

/// Rank position (0 = most profitable) of each customer; ties share the best rank.
fn profit_ranks(profits: &[i64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..profits.len()).collect();
    order.sort_by(|&a, &b| profits[b].cmp(&profits[a]));
    let mut ranks = vec![0; profits.len()];
    for (pos, &i) in order.iter().enumerate() {
        ranks[i] = if pos > 0 && profits[order[pos - 1]] == profits[i] {
            ranks[order[pos - 1]]
        } else {
            pos
        };
    }
    ranks
}

/// Pyramid level of each customer from lifetime profit (minor units).
pub fn value_tiers(profits: &[i64], cfg: &PyramidConfig) -> Vec<ValueTier> {
    let n = profits.len() as f64;
    profit_ranks(profits)
        .into_iter()
        .zip(profits)
        .map(|(rank, &profit)| {
            let share = rank as f64 / n;
            if profit <= cfg.lead_max_profit {
                ValueTier::Lead
            } else if share < cfg.platinum_share {
                ValueTier::Platinum
            } else if share < cfg.platinum_share + cfg.gold_share {
                ValueTier::Gold
            } else {
                ValueTier::Iron
            }
        })
        .collect()
}

/// Management tier of each customer from profit rank and purchase count.
pub fn management_tiers(
    profits: &[i64],
    purchases: &[u32],
    cfg: &TierConfig,
) -> Vec<ManagementTier> {
    let n = profits.len() as f64;
    profit_ranks(profits)
        .into_iter()
        .zip(purchases)
        .map(|(rank, &count)| {
            let share = rank as f64 / n;
            if count <= cfg.one_off_max_purchases {
                ManagementTier::OneOff
            } else if share < cfg.key_share {
                ManagementTier::Key
            } else if share < cfg.key_share + cfg.suitable_share {
                ManagementTier::Suitable
            } else {
                ManagementTier::Ordinary
            }
        })
        .collect()
}

/// Share of total positive profit made by the top 20% of customers (Pareto).
pub fn pareto_share(profits: &[i64]) -> f64 {
    pareto_curve(profits, 5).first().map_or(0.0, |p| p.1)
}

/// The Pareto curve in `steps` points: for k = 1..=steps, (k / steps, share of
/// the total positive profit made by the top ⌈k·n/steps⌉ of the n customers).
/// Counted in integers (a float product such as 35 × 0.2 rounds up past 7) and
/// summed in 128 bits: exact whatever the margins, never an overflow. All shares
/// 0 without positive profit; empty without customers.
pub fn pareto_curve(profits: &[i64], steps: usize) -> Vec<(f64, f64)> {
    let mut sorted: Vec<i128> = profits.iter().map(|p| i128::from((*p).max(0))).collect();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    let n = sorted.len();
    if n == 0 || steps == 0 {
        return Vec::new();
    }
    let total: i128 = sorted.iter().sum();
    let mut prefix = Vec::with_capacity(n + 1);
    prefix.push(0i128);
    for p in &sorted {
        prefix.push(prefix.last().copied().unwrap_or(0) + p);
    }
    (1..=steps)
        .map(|k| {
            let top = (n * k).div_ceil(steps);
            let share = if total == 0 {
                0.0
            } else {
                prefix[top] as f64 / total as f64
            };
            (k as f64 / steps as f64, share)
        })
        .collect()
}

// ---- lifecycle ---------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LifecycleConfig {
    /// Fewer purchases than this: still exploring.
    pub exploration_max_purchases: u32,
    /// Silent for more than this many usual intervals: declining; more than
    /// `terminated_intervals`: the relationship is over.
    pub decline_intervals: f64,
    pub terminated_intervals: f64,
    /// Period-over-period spend change (relative slope) beyond which the trend
    /// counts as rising or falling.
    pub trend_threshold: f64,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        LifecycleConfig {
            exploration_max_purchases: 2,
            decline_intervals: 2.0,
            terminated_intervals: 4.0,
            trend_threshold: 0.15,
        }
    }
}

/// Relative slope of a spend series: least-squares slope divided by the mean, so a
/// series growing 20% of its mean per period has trend 0.2.
pub fn spend_trend(periods: &[f64]) -> f64 {
    let n = periods.len() as f64;
    if periods.len() < 2 {
        return 0.0;
    }
    let mean_x = (n - 1.0) / 2.0;
    let mean_y = periods.iter().sum::<f64>() / n;
    if mean_y <= 0.0 {
        return 0.0;
    }
    let (mut num, mut den) = (0.0, 0.0);
    for (i, y) in periods.iter().enumerate() {
        let dx = i as f64 - mean_x;
        num += dx * (y - mean_y);
        den += dx * dx;
    }
    (num / den) / mean_y
}

/// Stage from purchase count, days since the last purchase against the customer's
/// own usual interval (the opening case of DOMAIN §1), and the spend trend.
pub fn lifecycle_stage(
    purchases: u32,
    days_since_last: f64,
    usual_interval_days: Option<f64>,
    spend_by_period: &[f64],
    cfg: &LifecycleConfig,
) -> LifecycleStage {
    if let Some(interval) = usual_interval_days.filter(|i| *i > 0.0) {
        let silent = days_since_last / interval;
        if silent > cfg.terminated_intervals {
            return LifecycleStage::Terminated;
        }
        if silent > cfg.decline_intervals {
            return LifecycleStage::Decline;
        }
    }
    if purchases <= cfg.exploration_max_purchases {
        return LifecycleStage::Exploration;
    }
    let trend = spend_trend(spend_by_period);
    if trend <= -cfg.trend_threshold {
        LifecycleStage::Decline
    } else if trend >= cfg.trend_threshold {
        LifecycleStage::Growth
    } else {
        LifecycleStage::Stability
    }
}

// ---- loyalty ladder ----------------------------------------------------------------

/// Ladder stage from repeat purchases and referrals given.
pub fn loyalty_stage(
    purchases: u32,
    referrals_given: u32,
    partner_min_purchases: u32,
    partner_min_referrals: u32,
) -> LoyaltyStage {
    match (purchases, referrals_given) {
        (0, _) => LoyaltyStage::Prospect,
        (1, _) => LoyaltyStage::Customer,
        (p, r) if p >= partner_min_purchases && r >= partner_min_referrals => LoyaltyStage::Partner,
        (_, r) if r > 0 => LoyaltyStage::Advocate,
        _ => LoyaltyStage::Client,
    }
}

// ---- customer order model ----------------------------------------------------------

/// Size tier by annual revenue (currency units of the tenant). DOMAIN §5 leaves
/// 50,000–500,000 unnamed; it counts as small here.
pub fn size_tier(annual_revenue: f64) -> SizeTier {
    if annual_revenue > 5_000_000.0 {
        SizeTier::Large
    } else if annual_revenue >= 1_000_000.0 {
        SizeTier::Medium
    } else if annual_revenue >= 50_000.0 {
        SizeTier::Small
    } else {
        SizeTier::Sporadic
    }
}

pub fn wallet_stability(share: f64) -> WalletStability {
    if share >= 0.8 {
        WalletStability::Stable
    } else if share >= 0.5 {
        WalletStability::BasicallyStable
    } else if share >= 0.3 {
        WalletStability::Unstable
    } else {
        WalletStability::VeryUnstable
    }
}

/// The order model's three binary judgements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderInputs {
    pub high_credit: bool,
    pub big: bool,
    pub loyal: bool,
}

/// Credit × size × loyalty → 1 (high-big-loyal, develop first) … 8
/// (low-small-disloyal), ranked credit first, size second, loyalty third.
pub fn order_type(i: OrderInputs) -> u8 {
    1 + 4 * u8::from(!i.high_credit) + 2 * u8::from(!i.big) + u8::from(!i.loyal)
}

/// Loyalty × size: big-loyal 1, big-disloyal 2, small-loyal 3, small-disloyal 4.
pub fn loyalty_size_rank(i: OrderInputs) -> u8 {
    1 + 2 * u8::from(!i.big) + u8::from(!i.loyal)
}

/// Loyalty × credit: high-high 1, high credit-low loyalty 2, low-high 3, low-low 4.
pub fn loyalty_credit_rank(i: OrderInputs) -> u8 {
    1 + 2 * u8::from(!i.high_credit) + u8::from(!i.loyal)
}

// ---- key-account matrix ------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MatrixConfig {
    /// Weights of the attractiveness inputs (profit, growth, size), each in 0..=1.
    pub profit_weight: f64,
    pub growth_weight: f64,
    pub size_weight: f64,
    /// Weights of relative strength inputs (share of wallet, loyalty).
    pub wallet_weight: f64,
    pub loyalty_weight: f64,
    /// Scores at or above this are "high".
    pub threshold: f64,
}

impl Default for MatrixConfig {
    fn default() -> Self {
        MatrixConfig {
            profit_weight: 0.5,
            growth_weight: 0.25,
            size_weight: 0.25,
            wallet_weight: 0.6,
            loyalty_weight: 0.4,
            threshold: 0.5,
        }
    }
}

/// Inputs normalised to 0..=1 (e.g. profit percentile).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MatrixInputs {
    pub profit: f64,
    pub growth: f64,
    pub size: f64,
    pub share_of_wallet: f64,
    pub loyalty: f64,
}

pub fn account_quadrant(i: &MatrixInputs, c: &MatrixConfig) -> AccountQuadrant {
    let weighted = |pairs: &[(f64, f64)]| {
        let total: f64 = pairs.iter().map(|(_, w)| w).sum();
        if total <= 0.0 {
            0.0
        } else {
            pairs
                .iter()
                .map(|(v, w)| v.clamp(0.0, 1.0) * w)
                .sum::<f64>()
                / total
        }
    };
    let attractive = weighted(&[
        (i.profit, c.profit_weight),
        (i.growth, c.growth_weight),
        (i.size, c.size_weight),
    ]) >= c.threshold;
    let strong = weighted(&[
        (i.share_of_wallet, c.wallet_weight),
        (i.loyalty, c.loyalty_weight),
    ]) >= c.threshold;
    match (attractive, strong) {
        (true, true) => AccountQuadrant::Key,
        (true, false) => AccountQuadrant::KeyDevelopment,
        (false, true) => AccountQuadrant::Maintenance,
        (false, false) => AccountQuadrant::Opportunistic,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quintiles_split_evenly_and_share_ties() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(quintiles(&v, true), vec![1, 1, 2, 2, 3, 3, 4, 4, 5, 5]);
        assert_eq!(
            quintiles(&v, false),
            vec![5, 5, 4, 4, 3, 3, 2, 2, 1, 1],
            "recency: fewer days is better"
        );
        assert_eq!(
            quintiles(&[7.0; 4], true),
            vec![3; 4],
            "all tied: the middle score"
        );
        assert!(quintiles(&[], true).is_empty());
    }

    #[test]
    fn rfm_grid_boundaries() {
        assert_eq!(rfm_segment(5, 5), RfmSegment::Champions);
        assert_eq!(rfm_segment(4, 4), RfmSegment::Champions);
        assert_eq!(rfm_segment(3, 5), RfmSegment::LoyalCustomers);
        assert_eq!(rfm_segment(4, 3), RfmSegment::LoyalCustomers);
        assert_eq!(rfm_segment(5, 1), RfmSegment::NewCustomers);
        assert_eq!(rfm_segment(5, 2), RfmSegment::PotentialLoyalists);
        assert_eq!(rfm_segment(3, 2), RfmSegment::NeedAttention);
        assert_eq!(rfm_segment(2, 4), RfmSegment::AtRisk);
        assert_eq!(rfm_segment(2, 3), RfmSegment::AboutToSleep);
        assert_eq!(rfm_segment(1, 5), RfmSegment::CannotLoseThem);
        assert_eq!(rfm_segment(1, 2), RfmSegment::Hibernating);
        assert_eq!(rfm_segment(1, 1), RfmSegment::Lost);
    }

    #[test]
    fn pyramid_and_tiers_at_their_cut_offs() {
        // 20 customers with profits 100, 95, ..., 5 and one loss-maker.
        let mut profits: Vec<i64> = (1..=20).rev().map(|i| i * 5).collect();
        profits.push(-50);
        let tiers = value_tiers(&profits, &PyramidConfig::default());
        // 21 customers: rank/21 < 0.05 -> rank 0 and 1 (1/21 = 0.048) platinum.
        assert_eq!(&tiers[..2], &[ValueTier::Platinum, ValueTier::Platinum]);
        assert_eq!(tiers[2], ValueTier::Gold);
        assert_eq!(tiers[4], ValueTier::Gold, "rank 4: 4/21 = 0.19 < 0.20");
        assert_eq!(tiers[5], ValueTier::Iron);
        assert_eq!(tiers[20], ValueTier::Lead, "unprofitable");
        let mut purchases = vec![5u32; 21];
        purchases[0] = 1;
        let m = management_tiers(&profits, &purchases, &TierConfig::default());
        assert_eq!(
            m[0],
            ManagementTier::OneOff,
            "a single purchase is one-off whatever the profit"
        );
        assert_eq!(m[1], ManagementTier::Key);
        assert_eq!(m[2], ManagementTier::Suitable);
        assert_eq!(m[5], ManagementTier::Ordinary);
    }

    #[test]
    fn pareto_share_of_the_top_fifth() {
        // 10 customers: top 2 make 80 of 100.
        let profits = [50, 30, 5, 5, 2, 2, 2, 2, 1, 1];
        assert!((pareto_share(&profits) - 0.8).abs() < 1e-12);
        assert_eq!(pareto_share(&[0, -5]), 0.0);
        // Margins whose sum leaves an i64: summed exactly, no overflow.
        let extreme = [i64::MAX, i64::MAX, i64::MAX, i64::MAX, i64::MAX];
        assert_eq!(pareto_share(&extreme), 0.2);
        // 35 customers: the top 7, though 35.0 * 0.2 is 7.000000000000001.
        let mut profits = vec![1; 28];
        profits.extend([10; 7]);
        assert!((pareto_share(&profits) - 70.0 / 98.0).abs() < 1e-12);
    }

    #[test]
    fn the_pareto_curve_rises_to_all_of_the_profit() {
        // 10 customers, in 5 steps: the top 2, 4, 6, 8, 10.
        let profits = [1, 50, 5, 30, 2, 5, -7, 2, 2, 3];
        let curve = pareto_curve(&profits, 5);
        let expected = [(0.2, 0.8), (0.4, 0.9), (0.6, 0.95), (0.8, 0.99), (1.0, 1.0)];
        assert_eq!(curve.len(), expected.len());
        for (got, want) in curve.iter().zip(expected) {
            assert!(
                (got.0 - want.0).abs() < 1e-12 && (got.1 - want.1).abs() < 1e-12,
                "{got:?} {want:?}"
            );
        }
        // Three customers in 20 steps: the 5 % point already holds the best one.
        let few = pareto_curve(&[3, 1, 0], 20);
        assert_eq!(few.len(), 20);
        assert_eq!(few[0], (0.05, 0.75));
        assert_eq!(few[19], (1.0, 1.0));
        assert!(pareto_curve(&[], 20).is_empty());
        assert!(pareto_curve(&[-1, 0], 4).iter().all(|p| p.1 == 0.0));
    }

    #[test]
    fn lifecycle_from_interval_and_trend() {
        let c = LifecycleConfig::default();
        let flat = [100.0, 100.0, 100.0, 100.0];
        assert_eq!(
            lifecycle_stage(10, 10.0, Some(10.0), &flat, &c),
            LifecycleStage::Stability
        );
        assert_eq!(
            lifecycle_stage(10, 20.0, Some(10.0), &flat, &c),
            LifecycleStage::Stability,
            "2 intervals: not yet"
        );
        assert_eq!(
            lifecycle_stage(10, 20.1, Some(10.0), &flat, &c),
            LifecycleStage::Decline
        );
        assert_eq!(
            lifecycle_stage(10, 40.1, Some(10.0), &flat, &c),
            LifecycleStage::Terminated
        );
        assert_eq!(
            lifecycle_stage(2, 1.0, Some(10.0), &flat, &c),
            LifecycleStage::Exploration
        );
        assert_eq!(
            lifecycle_stage(10, 1.0, Some(10.0), &[50.0, 80.0, 120.0, 160.0], &c),
            LifecycleStage::Growth
        );
        assert_eq!(
            lifecycle_stage(10, 1.0, Some(10.0), &[160.0, 120.0, 80.0, 50.0], &c),
            LifecycleStage::Decline
        );
        assert!((spend_trend(&[100.0, 120.0, 140.0]) - 20.0 / 120.0).abs() < 1e-12);
    }

    #[test]
    fn loyalty_ladder() {
        assert_eq!(loyalty_stage(0, 0, 10, 3), LoyaltyStage::Prospect);
        assert_eq!(loyalty_stage(1, 5, 10, 3), LoyaltyStage::Customer);
        assert_eq!(loyalty_stage(2, 0, 10, 3), LoyaltyStage::Client);
        assert_eq!(loyalty_stage(2, 1, 10, 3), LoyaltyStage::Advocate);
        assert_eq!(loyalty_stage(10, 3, 10, 3), LoyaltyStage::Partner);
        assert_eq!(loyalty_stage(9, 3, 10, 3), LoyaltyStage::Advocate);
    }

    #[test]
    fn order_model_types_and_size_and_wallet_boundaries() {
        let all = |c, b, l| OrderInputs {
            high_credit: c,
            big: b,
            loyal: l,
        };
        assert_eq!(order_type(all(true, true, true)), 1);
        assert_eq!(order_type(all(true, true, false)), 2);
        assert_eq!(order_type(all(true, false, true)), 3);
        assert_eq!(order_type(all(false, true, true)), 5);
        assert_eq!(order_type(all(false, false, false)), 8);
        assert_eq!(loyalty_size_rank(all(false, true, false)), 2);
        assert_eq!(loyalty_size_rank(all(true, false, true)), 3);
        assert_eq!(loyalty_credit_rank(all(true, false, false)), 2);
        assert_eq!(loyalty_credit_rank(all(false, true, true)), 3);
        assert_eq!(size_tier(5_000_001.0), SizeTier::Large);
        assert_eq!(size_tier(5_000_000.0), SizeTier::Medium);
        assert_eq!(size_tier(1_000_000.0), SizeTier::Medium);
        assert_eq!(size_tier(999_999.0), SizeTier::Small);
        assert_eq!(size_tier(49_999.0), SizeTier::Sporadic);
        assert_eq!(wallet_stability(0.8), WalletStability::Stable);
        assert_eq!(wallet_stability(0.79), WalletStability::BasicallyStable);
        assert_eq!(wallet_stability(0.5), WalletStability::BasicallyStable);
        assert_eq!(wallet_stability(0.3), WalletStability::Unstable);
        assert_eq!(wallet_stability(0.29), WalletStability::VeryUnstable);
    }

    #[test]
    fn key_account_quadrants() {
        let c = MatrixConfig::default();
        let i = |p, w| MatrixInputs {
            profit: p,
            growth: p,
            size: p,
            share_of_wallet: w,
            loyalty: w,
        };
        assert_eq!(account_quadrant(&i(0.9, 0.9), &c), AccountQuadrant::Key);
        assert_eq!(
            account_quadrant(&i(0.9, 0.1), &c),
            AccountQuadrant::KeyDevelopment
        );
        assert_eq!(
            account_quadrant(&i(0.1, 0.9), &c),
            AccountQuadrant::Maintenance
        );
        assert_eq!(
            account_quadrant(&i(0.1, 0.1), &c),
            AccountQuadrant::Opportunistic
        );
        assert_eq!(
            account_quadrant(&i(0.5, 0.5), &c),
            AccountQuadrant::Key,
            "the threshold counts as high"
        );
        let profit_only = MatrixConfig {
            growth_weight: 0.0,
            size_weight: 0.0,
            ..c
        };
        let mixed = MatrixInputs {
            profit: 0.9,
            growth: 0.0,
            size: 0.0,
            share_of_wallet: 0.9,
            loyalty: 0.9,
        };
        assert_eq!(account_quadrant(&mixed, &c), AccountQuadrant::Maintenance);
        assert_eq!(
            account_quadrant(&mixed, &profit_only),
            AccountQuadrant::Key,
            "weights are configurable"
        );
    }
}
