//! The markets process's Prometheus metrics (served at `/metrics`).

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

#[derive(Debug, Clone)]
pub struct Metrics {
    /// Deals in each state.
    pub deals: IntGaugeVec,
    pub bytes_received: IntCounter,
    pub transfer_restarts: IntCounter,
    pub transfer_failures: IntCounter,
    /// Proposals refused, by the check that refused them.
    pub rejections: IntCounterVec,
    /// Deals that failed, by the step they failed in.
    pub deal_failures: IntCounterVec,
    /// 1 while the hub answers.
    pub hub_connected: IntGauge,
    /// Bytes of staging held by deals in progress, and the high-water mark.
    pub staging_held_bytes: IntGauge,
    pub staging_max_bytes: IntGauge,
    /// Requests answered "busy" because a limit was reached, by limit.
    pub busy: IntCounterVec,
    /// libp2p connections open now.
    pub connections: IntGauge,
}

impl Metrics {
    pub fn new(registry: &Registry) -> anyhow::Result<Self> {
        let deals = IntGaugeVec::new(
            Opts::new("nelumbo_markets_deals", "Deals in each state"),
            &["state"],
        )?;
        let bytes_received = IntCounter::new(
            "nelumbo_markets_transfer_bytes_received_total",
            "Deal data bytes received from clients",
        )?;
        let transfer_restarts = IntCounter::new(
            "nelumbo_markets_transfer_restarts_total",
            "Transfers resumed after a failure or stall",
        )?;
        let transfer_failures = IntCounter::new(
            "nelumbo_markets_transfer_failures_total",
            "Transfers given up",
        )?;
        let rejections = IntCounterVec::new(
            Opts::new(
                "nelumbo_markets_deal_rejections_total",
                "Deal proposals refused, by reason",
            ),
            &["reason"],
        )?;
        let deal_failures = IntCounterVec::new(
            Opts::new(
                "nelumbo_markets_deal_failures_total",
                "Deals failed, by the step that failed",
            ),
            &["step"],
        )?;
        let hub_connected = IntGauge::new(
            "nelumbo_markets_hub_connected",
            "1 while the hub answers, 0 while it is unreachable",
        )?;
        registry.register(Box::new(deals.clone()))?;
        registry.register(Box::new(bytes_received.clone()))?;
        registry.register(Box::new(transfer_restarts.clone()))?;
        registry.register(Box::new(transfer_failures.clone()))?;
        registry.register(Box::new(rejections.clone()))?;
        registry.register(Box::new(deal_failures.clone()))?;
        registry.register(Box::new(hub_connected.clone()))?;
        let staging_held_bytes = IntGauge::new(
            "nelumbo_markets_staging_held_bytes",
            "Bytes of staging held by deals in progress (against [deals] staging_max_bytes)",
        )?;
        let staging_max_bytes = IntGauge::new(
            "nelumbo_markets_staging_max_bytes",
            "[deals] staging_max_bytes: proposals that would hold more are refused as busy",
        )?;
        let busy = IntCounterVec::new(
            Opts::new(
                "nelumbo_markets_requests_busy_total",
                "libp2p requests answered busy because a limit was reached, by limit",
            ),
            &["limit"],
        )?;
        let connections =
            IntGauge::new("nelumbo_markets_connections", "libp2p connections open now")?;
        registry.register(Box::new(staging_held_bytes.clone()))?;
        registry.register(Box::new(staging_max_bytes.clone()))?;
        registry.register(Box::new(busy.clone()))?;
        registry.register(Box::new(connections.clone()))?;
        Ok(Self {
            deals,
            bytes_received,
            transfer_restarts,
            transfer_failures,
            rejections,
            deal_failures,
            hub_connected,
            staging_held_bytes,
            staging_max_bytes,
            busy,
            connections,
        })
    }
}
