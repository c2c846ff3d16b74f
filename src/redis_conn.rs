//! One Redis connection per backend (limiter, cache), opened on first use — inside the
//! runtime, after a `-d` fork — and then shared by every call: a `ConnectionManager`
//! multiplexes requests and reconnects by itself. Connect and response times are bounded by
//! the backend's timeout, with one retry.

use redis::aio::ConnectionManager;
use std::time::Duration;
use tokio::sync::Mutex;

pub struct LazyRedis {
    client: redis::Client,
    conn: Mutex<Option<ConnectionManager>>,
    timeout: Duration,
}

impl LazyRedis {
    /// Parse `url`; nothing connects yet.
    pub fn open(url: &str, timeout: Duration) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|e| format!("not a Redis URL: {e}"))?;
        Ok(LazyRedis {
            client,
            conn: Mutex::new(None),
            timeout,
        })
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The shared connection, made on the first call.
    pub async fn get(&self) -> Result<ConnectionManager, String> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1);
        let c = ConnectionManager::new_with_config(self.client.clone(), config)
            .await
            .map_err(|e| e.to_string())?;
        *slot = Some(c.clone());
        Ok(c)
    }
}
