//! The hub's Prometheus metrics.

use std::time::Instant;

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

#[derive(Debug, Clone)]
pub struct Metrics {
    pub chain_connected: IntGauge,
    /// Sectors per pipeline state.
    pub sectors: IntGaugeVec,
    /// Seconds per proof computation, by kind.
    pub proof_seconds: HistogramVec,
    /// WindowPoSt messages by result: submitted (landed), failed, skipped_sectors.
    pub window_posts: IntCounterVec,
    /// Deadlines whose window closed without a WindowPoSt from the hub for live sectors.
    pub window_posts_missed: IntCounter,
    pub blocks_won: IntCounter,
    /// Elections checked and won blocks refused.
    pub elections: IntCounterVec,
    /// Free and reserved bytes per storage path.
    pub storage_free_bytes: IntGaugeVec,
    pub storage_reserved_bytes: IntGaugeVec,
    /// WindowPoSt latency: from the moment its challenge is known (the challenge epoch reached,
    /// or the hub started inside the window) to the message landing.
    pub window_post_latency_seconds: prometheus::Histogram,
    /// The same in epochs: the landing epoch minus the challenge epoch.
    pub window_post_latency_epochs: prometheus::Histogram,
    /// Messages of the hub's addresses waiting in the outbox, per sender.
    pub messages_pending: IntGaugeVec,
    /// Messages replaced at a higher fee because they held back their sender.
    pub messages_replaced: IntCounter,
    /// Unseal requests running or waiting for a slot, and how many the hub takes at once.
    pub unseals_queued: IntGauge,
    pub unseals_queue_limit: IntGauge,
}

impl Metrics {
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let metrics = Self {
            chain_connected: IntGauge::new(
                "nelumbo_miner_chain_connected",
                "1 while the chain answers, 0 otherwise",
            )?,
            sectors: IntGaugeVec::new(
                Opts::new("nelumbo_miner_sectors", "Sectors per sealing state"),
                &["state"],
            )?,
            proof_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "nelumbo_miner_proof_seconds",
                    "Seconds per proof computation (pre_commit_1, pre_commit_2, commit_1, commit_2, window_post, winning_post)",
                )
                .buckets(vec![
                    0.01, 0.05, 0.25, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0,
                ]),
                &["kind"],
            )?,
            window_posts: IntCounterVec::new(
                Opts::new(
                    "nelumbo_miner_window_posts_total",
                    "WindowPoSt messages by result (submitted, failed)",
                ),
                &["result"],
            )?,
            window_posts_missed: IntCounter::new(
                "nelumbo_miner_window_posts_missed_total",
                "Deadlines with live sectors whose window closed without an accepted WindowPoSt",
            )?,
            blocks_won: IntCounter::new(
                "nelumbo_miner_blocks_won_total",
                "Blocks won and accepted by the chain",
            )?,
            elections: IntCounterVec::new(
                Opts::new(
                    "nelumbo_miner_elections_total",
                    "Elections by outcome (lost, won, refused)",
                ),
                &["outcome"],
            )?,
            storage_free_bytes: IntGaugeVec::new(
                Opts::new("nelumbo_miner_storage_free_bytes", "Free bytes per storage path"),
                &["path"],
            )?,
            storage_reserved_bytes: IntGaugeVec::new(
                Opts::new(
                    "nelumbo_miner_storage_reserved_bytes",
                    "Bytes promised to sealing sectors per storage path",
                ),
                &["path"],
            )?,
            window_post_latency_seconds: prometheus::Histogram::with_opts(
                HistogramOpts::new(
                    "nelumbo_miner_window_post_latency_seconds",
                    "Seconds from a deadline's challenge to its WindowPoSt landing on chain",
                )
                .buckets(vec![1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0]),
            )?,
            window_post_latency_epochs: prometheus::Histogram::with_opts(
                HistogramOpts::new(
                    "nelumbo_miner_window_post_latency_epochs",
                    "Epochs from a deadline's challenge epoch to the epoch its WindowPoSt landed",
                )
                .buckets(vec![1.0, 2.0, 4.0, 6.0, 8.0, 10.0, 15.0, 20.0, 30.0, 60.0]),
            )?,
            messages_pending: IntGaugeVec::new(
                Opts::new(
                    "nelumbo_miner_messages_pending",
                    "Messages the hub signed that have not executed yet, per sending address",
                ),
                &["sender"],
            )?,
            messages_replaced: IntCounter::new(
                "nelumbo_miner_messages_replaced_total",
                "Messages replaced at a higher fee because they held back their sender's queue",
            )?,
            unseals_queued: IntGauge::new(
                "nelumbo_miner_unseals_queued",
                "Unseal requests running or waiting for an unsealing slot",
            )?,
            unseals_queue_limit: IntGauge::new(
                "nelumbo_miner_unseals_queue_limit",
                "Unseal requests the hub takes at once; more are answered busy",
            )?,
        };
        registry.register(Box::new(metrics.window_post_latency_seconds.clone()))?;
        registry.register(Box::new(metrics.window_post_latency_epochs.clone()))?;
        registry.register(Box::new(metrics.messages_pending.clone()))?;
        registry.register(Box::new(metrics.messages_replaced.clone()))?;
        registry.register(Box::new(metrics.unseals_queued.clone()))?;
        registry.register(Box::new(metrics.unseals_queue_limit.clone()))?;
        registry.register(Box::new(metrics.chain_connected.clone()))?;
        registry.register(Box::new(metrics.sectors.clone()))?;
        registry.register(Box::new(metrics.proof_seconds.clone()))?;
        registry.register(Box::new(metrics.window_posts.clone()))?;
        registry.register(Box::new(metrics.window_posts_missed.clone()))?;
        registry.register(Box::new(metrics.blocks_won.clone()))?;
        registry.register(Box::new(metrics.elections.clone()))?;
        registry.register(Box::new(metrics.storage_free_bytes.clone()))?;
        registry.register(Box::new(metrics.storage_reserved_bytes.clone()))?;
        Ok(metrics)
    }

    pub fn observe_proof(&self, kind: &str, started: Instant) {
        self.proof_seconds
            .with_label_values(&[kind])
            .observe(started.elapsed().as_secs_f64());
    }
}
