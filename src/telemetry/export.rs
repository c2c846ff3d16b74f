//! The OTLP/HTTP exporter: spans queue in a bounded channel (a full queue drops the newest and
//! counts it — tracing never slows a request), and a background task posts them in batches of up
//! to `MAX_BATCH` or once a second as JSON to `{endpoint}/v1/traces`, through Pingora's own
//! connector (the gateway's TLS stack and trust; no second HTTP client in the binary).

use super::span::{encode, SpanRecord};
use super::TracingConfig;
use async_trait::async_trait;
use pingora_core::connectors::http::Connector;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_http::RequestHeader;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Spans waiting for the exporter before new ones are dropped.
const QUEUE: usize = 8192;
const MAX_BATCH: usize = 512;
const BATCH_WINDOW: Duration = Duration::from_secs(1);

pub(crate) struct Tracer {
    pub config: TracingConfig,
    tx: mpsc::Sender<SpanRecord>,
    rx: Mutex<Option<mpsc::Receiver<SpanRecord>>>,
    /// Spans dropped because the queue was full or the collector refused them.
    pub dropped: AtomicU64,
    pub exported: AtomicU64,
}

impl Tracer {
    pub(crate) fn new(config: TracingConfig) -> Arc<Tracer> {
        let (tx, rx) = mpsc::channel(QUEUE);
        Arc::new(Tracer {
            config,
            tx,
            rx: Mutex::new(Some(rx)),
            dropped: AtomicU64::new(0),
            exported: AtomicU64::new(0),
        })
    }

    /// Whether a new trace (one no caller sampled) is recorded: by its id, so every node of a
    /// cluster decides alike for the same trace.
    pub(crate) fn samples(&self, trace_id: &super::span::TraceId) -> bool {
        let x = u64::from_be_bytes(trace_id[8..].try_into().unwrap_or_default());
        (x as f64) < self.config.sample * u64::MAX as f64
    }

    pub(crate) fn submit(&self, span: SpanRecord) {
        if self.tx.try_send(span).is_err() {
            self.dropped.fetch_add(1, Relaxed);
        }
    }

    /// The background service that sends the queued spans (one per process).
    pub(crate) fn exporter(self: &Arc<Self>) -> Exporter {
        Exporter(Arc::clone(self))
    }

    async fn post(&self, connector: &Connector, body: Vec<u8>) -> Result<(), String> {
        let url = &self.config.endpoint;
        let addr = tokio::net::lookup_host((url.host.as_str(), url.port))
            .await
            .map_err(|e| format!("cannot resolve the collector: {e}"))?
            .next()
            .ok_or("the collector's name has no address")?;
        let mut peer = HttpPeer::new(addr, url.tls, url.host.clone());
        peer.options.connection_timeout = Some(self.config.timeout);
        peer.options.total_connection_timeout = Some(self.config.timeout);
        peer.options.read_timeout = Some(self.config.timeout);
        peer.options.write_timeout = Some(self.config.timeout);
        let (mut session, _) = connector
            .get_http_session(&peer)
            .await
            .map_err(|e| format!("cannot connect to the collector: {e}"))?;
        let path = format!("{}/v1/traces", url.base_path);
        let mut req =
            RequestHeader::build("POST", path.as_bytes(), Some(4 + self.config.headers.len()))
                .map_err(|e| e.to_string())?;
        let fixed = [
            ("host".to_string(), url.authority()),
            ("content-type".to_string(), "application/json".to_string()),
            ("content-length".to_string(), body.len().to_string()),
        ];
        for (name, value) in fixed.iter().chain(self.config.headers.iter()) {
            req.insert_header(name.clone(), value.as_str())
                .map_err(|e| e.to_string())?;
        }
        let exchange = async {
            session.write_request_header(Box::new(req)).await?;
            session.write_request_body(body.into(), true).await?;
            session.finish_request_body().await?;
            session.read_response_header().await?;
            while session.read_response_body().await?.is_some() {}
            Ok::<_, Box<pingora_core::Error>>(())
        };
        tokio::time::timeout(self.config.timeout, exchange)
            .await
            .map_err(|_| "the collector did not answer in time".to_string())?
            .map_err(|e| format!("the collector exchange failed: {e}"))?;
        let status = session.response_header().map_or(0, |h| h.status.as_u16());
        if !(200..300).contains(&status) {
            return Err(format!("the collector answered {status}"));
        }
        connector
            .release_http_session(session, &peer, Some(Duration::from_secs(60)))
            .await;
        Ok(())
    }

    async fn send(
        &self,
        connector: &Connector,
        batch: &mut Vec<SpanRecord>,
        last_warning: &mut Option<Instant>,
    ) {
        if batch.is_empty() {
            return;
        }
        let body = encode(&self.config.service_name, batch);
        match self.post(connector, body).await {
            Ok(()) => {
                self.exported.fetch_add(batch.len() as u64, Relaxed);
            }
            Err(why) => {
                self.dropped.fetch_add(batch.len() as u64, Relaxed);
                // One line a minute at most: a collector outage must not flood the log.
                if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                    log::warn!("traces: {} spans not exported: {why}", batch.len());
                    *last_warning = Some(Instant::now());
                }
            }
        }
        batch.clear();
    }
}

pub(crate) struct Exporter(Arc<Tracer>);

#[async_trait]
impl BackgroundService for Exporter {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let tracer = &self.0;
        let Some(mut rx) = tracer.rx.lock().ok().and_then(|mut r| r.take()) else {
            return;
        };
        let connector = Connector::new(None);
        let mut batch = Vec::with_capacity(MAX_BATCH);
        let mut last_warning = None;
        loop {
            // Wait for a first span, then gather for at most a second.
            tokio::select! {
                span = rx.recv() => match span {
                    Some(span) => batch.push(span),
                    None => break,
                },
                _ = shutdown.changed() => break,
            }
            let deadline = tokio::time::Instant::now() + BATCH_WINDOW;
            while batch.len() < MAX_BATCH {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(span)) => batch.push(span),
                    Ok(None) | Err(_) => break,
                }
            }
            tracer.send(&connector, &mut batch, &mut last_warning).await;
        }
        // Stopping: what is queued goes out in one last round, bounded by the timeout.
        while let Ok(span) = rx.try_recv() {
            batch.push(span);
            if batch.len() == MAX_BATCH {
                tracer.send(&connector, &mut batch, &mut last_warning).await;
            }
        }
        tracer.send(&connector, &mut batch, &mut last_warning).await;
    }
}
