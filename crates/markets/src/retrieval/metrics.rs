//! Retrieval's Prometheus metrics (served on `/metrics` of the admin API and of the retrieval
//! listener).

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

#[derive(Debug, Clone)]
pub struct RetrievalMetrics {
    /// Requests answered, by route and status code.
    pub requests: IntCounterVec,
    /// Body bytes sent, by route.
    pub bytes: IntCounterVec,
    /// Seconds to the response's headers, and to its end, by route.
    pub first_byte: HistogramVec,
    pub duration: HistogramVec,
    /// Piece reads by where they were served from (cache, hub).
    pub reads: IntCounterVec,
    /// Unseal jobs asked of the hub, and requests that waited for one.
    pub unseals: IntCounter,
    pub unseal_waits: IntCounter,
    /// Hub calls and reads that failed.
    pub hub_errors: IntCounter,
    /// Copies into the cache, by outcome.
    pub cache_fills: IntCounterVec,
    pub cache_bytes: IntGauge,
    pub cache_pieces: IntGauge,
    /// Requests and connections refused because a limit was reached, by limit.
    pub refused: IntCounterVec,
    /// Blocks found not to match their CIDs (never served).
    pub bad_blocks: IntCounter,
    pub connections: IntGauge,
    /// CAR responses: blocks per response.
    pub car_blocks: Histogram,
}

impl RetrievalMetrics {
    pub fn new(registry: &Registry) -> anyhow::Result<Self> {
        let seconds = vec![
            0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
        ];
        let m = Self {
            requests: IntCounterVec::new(
                Opts::new(
                    "nelumbo_retrieval_requests_total",
                    "Retrieval requests answered, by route and status",
                ),
                &["route", "status"],
            )?,
            bytes: IntCounterVec::new(
                Opts::new(
                    "nelumbo_retrieval_bytes_sent_total",
                    "Response body bytes sent, by route",
                ),
                &["route"],
            )?,
            first_byte: HistogramVec::new(
                HistogramOpts::new(
                    "nelumbo_retrieval_time_to_first_byte_seconds",
                    "Seconds from a request to its response's headers, by route",
                )
                .buckets(seconds.clone()),
                &["route"],
            )?,
            duration: HistogramVec::new(
                HistogramOpts::new(
                    "nelumbo_retrieval_duration_seconds",
                    "Seconds from a request to the end of its response, by route",
                )
                .buckets(seconds),
                &["route"],
            )?,
            reads: IntCounterVec::new(
                Opts::new(
                    "nelumbo_retrieval_piece_reads_total",
                    "Piece reads by source (cache, hub)",
                ),
                &["source"],
            )?,
            unseals: IntCounter::new(
                "nelumbo_retrieval_unseal_jobs_total",
                "Unseal jobs asked of the hub",
            )?,
            unseal_waits: IntCounter::new(
                "nelumbo_retrieval_unseal_waits_total",
                "Times a request waited for an unseal job",
            )?,
            hub_errors: IntCounter::new(
                "nelumbo_retrieval_hub_errors_total",
                "Hub lookups, reads and unseals that failed",
            )?,
            cache_fills: IntCounterVec::new(
                Opts::new(
                    "nelumbo_retrieval_cache_fills_total",
                    "Pieces copied into the cache, by outcome",
                ),
                &["outcome"],
            )?,
            cache_bytes: IntGauge::new(
                "nelumbo_retrieval_cache_bytes",
                "Bytes held by the piece cache",
            )?,
            cache_pieces: IntGauge::new(
                "nelumbo_retrieval_cache_pieces",
                "Pieces held by the piece cache",
            )?,
            refused: IntCounterVec::new(
                Opts::new(
                    "nelumbo_retrieval_refused_total",
                    "Requests and connections refused because a limit was reached, by limit",
                ),
                &["limit"],
            )?,
            bad_blocks: IntCounter::new(
                "nelumbo_retrieval_bad_blocks_total",
                "Stored blocks that did not match their CIDs (never served)",
            )?,
            connections: IntGauge::new(
                "nelumbo_retrieval_connections",
                "HTTP connections open now",
            )?,
            car_blocks: Histogram::with_opts(
                HistogramOpts::new("nelumbo_retrieval_car_blocks", "Blocks per CAR response")
                    .buckets(vec![
                        1.0,
                        10.0,
                        100.0,
                        1000.0,
                        10_000.0,
                        100_000.0,
                        1_000_000.0,
                    ]),
            )?,
        };
        registry.register(Box::new(m.requests.clone()))?;
        registry.register(Box::new(m.bytes.clone()))?;
        registry.register(Box::new(m.first_byte.clone()))?;
        registry.register(Box::new(m.duration.clone()))?;
        registry.register(Box::new(m.reads.clone()))?;
        registry.register(Box::new(m.unseals.clone()))?;
        registry.register(Box::new(m.unseal_waits.clone()))?;
        registry.register(Box::new(m.hub_errors.clone()))?;
        registry.register(Box::new(m.cache_fills.clone()))?;
        registry.register(Box::new(m.cache_bytes.clone()))?;
        registry.register(Box::new(m.cache_pieces.clone()))?;
        registry.register(Box::new(m.refused.clone()))?;
        registry.register(Box::new(m.bad_blocks.clone()))?;
        registry.register(Box::new(m.connections.clone()))?;
        registry.register(Box::new(m.car_blocks.clone()))?;
        Ok(m)
    }
}
