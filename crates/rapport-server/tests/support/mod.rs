//! An in-process Rapport for router tests: the real router (`oneshot`), an embedded store
//! in a temporary directory, a write key and an admin key, and the stages run on demand.

#![allow(dead_code)]

use axum::body::Body;
use axum::http::{Request, StatusCode};
use rapport_engine::access::Access;
use rapport_engine::identity::runner::Matcher;
use rapport_engine::ingest::{IngestOptions, Ingestor};
use rapport_engine::processor::Processor;
use rapport_engine::signal::LogSignal;
use rapport_engine::value::Models;
use rapport_server::{AppState, ServerConfig, app};
use rapport_store::embedded::EmbeddedStore;
use rapport_store::{KeyKind, Store};
use serde_json::Value;
use std::sync::Arc;
use tower::ServiceExt;

pub struct Harness {
    pub _dir: tempfile::TempDir,
    pub store: Arc<dyn Store>,
    pub router: axum::Router,
    pub write_key: String,
    pub admin_key: String,
    pub runtime: tokio::runtime::Runtime,
}

impl Harness {
    pub fn new() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let access = Arc::new(Access::new(store.clone()));
        let (_, write) = access.create_source("test", 0).unwrap();
        let admin = access.create_key(KeyKind::Admin, None, "admin", 0).unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let signal = Arc::new(LogSignal::new(0));
        let (ingestor, _writer) = Ingestor::start(
            store.clone(),
            signal.clone(),
            IngestOptions {
                dedup_window_ms: 7 * 86_400_000,
                queue_depth: 64,
            },
        );
        let state = AppState {
            config: Arc::new(ServerConfig::default()),
            store: store.clone(),
            ingestor,
            access: access.clone(),
            signal,
            models: Models::new(store.clone(), Default::default()).unwrap(),
            matcher: Matcher::new(
                store.clone(),
                Arc::new(|_| Err(rapport_engine::EngineError::ShuttingDown)),
            ),
            privacy: Arc::new(rapport_engine::privacy::Privacy::new(store.clone()).unwrap()),
            plans: Arc::new(rapport_engine::tracking_plans::TrackingPlans::new(
                store.clone(),
            )),
            sessions: Arc::new(rapport_engine::sessions::Sessions::new(
                store.clone(),
                access.clone(),
            )),
            rejections: Default::default(),
        };
        Harness {
            _dir: dir,
            store,
            router: app(state),
            write_key: write.secret,
            admin_key: admin.secret,
            runtime,
        }
    }

    pub fn send(&self, method: &str, path: &str, key: &str, body: Vec<u8>) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {key}"))
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap();
        self.runtime.block_on(async {
            let response = self.router.clone().oneshot(request).await.unwrap();
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            (
                status,
                serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            )
        })
    }

    pub fn get(&self, path: &str) -> Value {
        let (status, body) = self.send("GET", path, &self.admin_key, Vec::new());
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        body
    }

    /// Runs the indexer and the processor until they have read the whole log.
    pub fn drain(&self) {
        while rapport_engine::indexer::index_available(self.store.as_ref()).unwrap() > 0 {}
        Processor::new(self.store.clone(), Default::default())
            .run_to_end()
            .unwrap();
    }
}

impl Harness {
    /// Sends a request without a key, answering the status and the body as text.
    pub fn send_raw(&self, method: &str, path: &str, body: &str) -> (StatusCode, String) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::from(body.to_owned()))
            .unwrap();
        self.runtime.block_on(async {
            let response = self.router.clone().oneshot(request).await.unwrap();
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            (status, String::from_utf8_lossy(&bytes).into_owned())
        })
    }
}
