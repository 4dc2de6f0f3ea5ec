//! The chain's Prometheus metrics (`nelumbo_chain_*`).

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

#[derive(Debug, Clone)]
pub struct ChainMetrics {
    pub registry: Registry,
    pub head_height: IntGauge,
    pub mpool_messages: IntGauge,
    pub messages_executed: IntCounterVec,
    pub blocks_won: IntCounter,
    pub tipset_seconds: Histogram,
}

impl ChainMetrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let head_height = IntGauge::new("nelumbo_chain_head_height", "Height of the head tipset")
            .unwrap_or_else(|_| unreachable!());
        let mpool_messages = IntGauge::new(
            "nelumbo_chain_mpool_messages",
            "Messages waiting in the pool",
        )
        .unwrap_or_else(|_| unreachable!());
        let messages_executed = IntCounterVec::new(
            Opts::new(
                "nelumbo_chain_messages_executed_total",
                "Messages executed, by exit code",
            ),
            &["exit_code"],
        )
        .unwrap_or_else(|_| unreachable!());
        let blocks_won = IntCounter::new("nelumbo_chain_blocks_won_total", "Won blocks accepted")
            .unwrap_or_else(|_| unreachable!());
        let tipset_seconds = Histogram::with_opts(HistogramOpts::new(
            "nelumbo_chain_tipset_production_seconds",
            "Time to execute messages and produce a tipset",
        ))
        .unwrap_or_else(|_| unreachable!());
        for metric in [
            Box::new(head_height.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(mpool_messages.clone()),
            Box::new(messages_executed.clone()),
            Box::new(blocks_won.clone()),
            Box::new(tipset_seconds.clone()),
        ] {
            let _ = registry.register(metric);
        }
        Self {
            registry,
            head_height,
            mpool_messages,
            messages_executed,
            blocks_won,
            tipset_seconds,
        }
    }
}

impl Default for ChainMetrics {
    fn default() -> Self {
        Self::new()
    }
}
