//! Health checks and the operations endpoints every daemon serves: `/health/live`,
//! `/health/ready` and Prometheus `/metrics`.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{Encoder, Registry, TextEncoder};
use serde::Serialize;

/// The state of one readiness check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "detail", rename_all = "lowercase")]
pub enum HealthState {
    Ready,
    /// Not ready; the text says why, for an operator.
    NotReady(String),
}

/// Named readiness checks, updated by the subsystems that own them.
#[derive(Debug, Clone, Default)]
pub struct Health {
    checks: Arc<RwLock<BTreeMap<String, HealthState>>>,
}

impl Health {
    pub fn set(&self, check: &str, state: HealthState) {
        if let Ok(mut checks) = self.checks.write() {
            let previous = checks.insert(check.to_string(), state.clone());
            if previous.as_ref() != Some(&state) {
                match &state {
                    HealthState::Ready => tracing::info!(check, "ready"),
                    HealthState::NotReady(why) => tracing::warn!(check, why = %why, "not ready"),
                }
            }
        }
    }

    pub fn ready(&self, check: &str) {
        self.set(check, HealthState::Ready);
    }

    pub fn not_ready(&self, check: &str, why: impl Into<String>) {
        self.set(check, HealthState::NotReady(why.into()));
    }

    /// Every check and its state.
    pub fn snapshot(&self) -> BTreeMap<String, HealthState> {
        self.checks.read().map(|c| c.clone()).unwrap_or_default()
    }

    pub fn is_ready(&self) -> bool {
        self.snapshot().values().all(|s| *s == HealthState::Ready)
    }
}

/// `/health/live` (200 while the process serves), `/health/ready` (200 when every check is
/// ready, 503 otherwise; both with the checks as JSON) and `/metrics`.
pub fn ops_router(health: Health, registry: Registry) -> Router {
    ops_router_with(health, registry, true)
}

/// [`ops_router`] for a public listener: `/health/ready` names each check and whether it is
/// ready, without the reasons (they name inside addresses and errors).
pub fn public_ops_router(health: Health, registry: Registry) -> Router {
    ops_router_with(health, registry, false)
}

fn ops_router_with(health: Health, registry: Registry, details: bool) -> Router {
    let ready = health.clone();
    Router::new()
        .route("/health/live", get(|| async { "live\n" }))
        .route(
            "/health/ready",
            get(move || {
                let health = ready.clone();
                async move {
                    let mut checks = health.snapshot();
                    if !details {
                        for state in checks.values_mut() {
                            if let HealthState::NotReady(why) = state {
                                *why = "not ready".into();
                            }
                        }
                    }
                    let status = if health.is_ready() {
                        StatusCode::OK
                    } else {
                        StatusCode::SERVICE_UNAVAILABLE
                    };
                    (status, axum::Json(checks))
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                async move {
                    let mut buf = Vec::new();
                    match TextEncoder::new().encode(&registry.gather(), &mut buf) {
                        Ok(()) => (
                            StatusCode::OK,
                            [("content-type", "text/plain; version=0.0.4")],
                            buf,
                        )
                            .into_response(),
                        Err(e) => {
                            (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
                        }
                    }
                }
            }),
        )
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn ready_reflects_every_check() {
        let health = Health::default();
        health.ready("storage");
        health.not_ready("chain", "connection refused");
        let router = ops_router(health.clone(), Registry::new());
        let get = |path: &str| Request::get(path).body(Body::empty()).expect("request");
        let response = router
            .clone()
            .oneshot(get("/health/ready"))
            .await
            .expect("response");
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let response = router
            .clone()
            .oneshot(get("/health/live"))
            .await
            .expect("response");
        assert_eq!(response.status(), StatusCode::OK);
        health.ready("chain");
        let response = router
            .oneshot(get("/health/ready"))
            .await
            .expect("response");
        assert_eq!(response.status(), StatusCode::OK);
    }
}
