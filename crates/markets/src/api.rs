//! The admin API's handlers: one per method of `nelumbo_markets_api::admin`.

use std::sync::Arc;

use nelumbo_markets_api::admin::*;
use nelumbo_rpc::{RpcError, RpcModule};

use crate::ask::AskBook;
use crate::deals::Deals;

#[derive(Debug, Clone)]
pub struct ApiState {
    pub deals: Deals,
    pub asks: Arc<AskBook>,
    pub info: Arc<MarketsInfo>,
    /// When indexing runs in this process.
    pub indexing: Option<crate::indexing::Indexing>,
    pub workers: nelumbo_service::Workers,
}

fn indexing(s: &ApiState) -> Result<&crate::indexing::Indexing, RpcError> {
    s.indexing.as_ref().ok_or_else(|| {
        RpcError::failed("indexing does not run in this process (--services names it)".to_string())
    })
}

fn failed(e: anyhow::Error) -> RpcError {
    RpcError::failed(format!("{e:#}"))
}

pub fn module(state: ApiState) -> RpcModule<ApiState> {
    let mut module = RpcModule::new(nelumbo_markets_api::API_TITLE, state);
    module
        .register::<Info, _, _>(|s, ()| async move {
            let mut info = (*s.info).clone();
            info.hub_connected = s.deals.0.hub.is_connected();
            Ok(info)
        })
        .register::<DealsList, _, _>(|s, ()| async move {
            let mut deals: Vec<DealInfo> = s
                .deals
                .0
                .store
                .deals()
                .await
                .map_err(failed)?
                .iter()
                .map(|d| {
                    let mut info = d.info();
                    info.bytes_received = s.deals.bytes_received(d);
                    info
                })
                .collect();
            deals.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.uuid.cmp(&b.uuid)));
            Ok(deals)
        })
        .register::<DealsShow, _, _>(|s, (uuid,)| async move {
            let record = s
                .deals
                .0
                .store
                .deal(&uuid)
                .await
                .map_err(failed)?
                .ok_or_else(|| RpcError::invalid_params(format!("no deal {uuid}")))?;
            let mut info = record.info();
            info.bytes_received = s.deals.bytes_received(&record);
            Ok(info)
        })
        .register::<DealsLogs, _, _>(|s, (uuid,)| async move {
            if s.deals.0.store.deal(&uuid).await.map_err(failed)?.is_none() {
                return Err(RpcError::invalid_params(format!("no deal {uuid}")));
            }
            s.deals.0.store.logs(&uuid).await.map_err(failed)
        })
        .register::<DealsRetry, _, _>(
            |s, (uuid,)| async move { s.deals.retry(&uuid).await.map_err(failed) },
        )
        .register::<DealsCancel, _, _>(|s, (uuid,)| async move {
            s.deals.cancel(&uuid).await.map_err(failed)
        })
        .register::<DealsImportData, _, _>(|s, (uuid, path)| async move {
            s.deals
                .import_data(&uuid, std::path::Path::new(&path))
                .await
                .map_err(failed)
        })
        .register::<WorkersList, _, _>(|s, ()| async move { Ok(s.workers.list()) })
        .register::<IndexStatus, _, _>(|s, ()| async move {
            indexing(&s)?.status().await.map_err(failed)
        })
        .register::<IndexList, _, _>(|s, ()| async move {
            indexing(&s)?.pieces().await.map_err(failed)
        })
        .register::<IndexShow, _, _>(|s, (piece,)| async move {
            indexing(&s)?.piece(&piece).await.map_err(failed)
        })
        .register::<IndexAnnounce, _, _>(|s, ()| async move {
            indexing(&s)?.reannounce();
            Ok(())
        })
        .register::<IndexRemove, _, _>(|s, (piece,)| async move {
            indexing(&s)?
                .remove(&piece)
                .await
                .map_err(|e| RpcError::invalid_params(format!("{e:#}")))
        })
        .register::<IndexRestore, _, _>(|s, (piece,)| async move {
            indexing(&s)?
                .restore(&piece)
                .await
                .map_err(|e| RpcError::invalid_params(format!("{e:#}")))
        })
        .register::<AskGet, _, _>(|s, ()| async move { Ok(s.asks.settings()) })
        .register::<AskSet, _, _>(|s, (ask,)| async move {
            let settings = s.asks.set(&s.deals.0.store, ask).await.map_err(failed)?;
            // The hub holds deals to the last ask it signed: have it sign this one now.
            if let Err(e) = s.asks.signed(&s.deals.0.hub).await {
                tracing::warn!(error = %format!("{e:#}"), "the new ask is set but the hub has not signed it yet; it signs it when the hub is back");
            }
            Ok(settings)
        });
    module
}
