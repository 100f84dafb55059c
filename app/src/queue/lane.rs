//! One lazily made Redis connection for a queue, dropped after a failure so that the next call
//! makes a new one (a connection that timed out may hold a late reply), and every call made
//! once more on a new connection when the one in use turns out broken (Redis restarted since it
//! was made): so every command a queue sends may run twice, and each is written to allow it.

use std::{sync::Mutex, time::Duration};

use redis::{aio::MultiplexedConnection, AsyncConnectionConfig, ErrorKind, RedisResult};

use super::QueueError;

/// One lazily made connection, dropped after a failure so the next call makes a new one.
#[derive(Default)]
pub(super) struct Lane(Mutex<Option<MultiplexedConnection>>);

impl Lane {
    pub(super) async fn connection(
        &self,
        client: &redis::Client,
        timeout: Duration,
    ) -> Result<MultiplexedConnection, QueueError> {
        if let Some(connection) = self.0.lock().expect("lane lock").clone() {
            return Ok(connection);
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(None);
        let connection = tokio::time::timeout(
            timeout,
            client.get_multiplexed_async_connection_with_config(&config),
        )
        .await
        .map_err(|_| QueueError::Timeout(timeout))??;
        *self.0.lock().expect("lane lock") = Some(connection.clone());
        Ok(connection)
    }

    pub(super) fn drop_connection(&self) {
        *self.0.lock().expect("lane lock") = None;
    }

    /// Runs `run` on this lane's connection within `within`, once more on a new connection if
    /// the one in use was broken; a failure other than a server's answer (a timeout, a broken
    /// connection) drops the connection.
    pub(super) async fn within<T, F, Fut>(
        &self,
        client: &redis::Client,
        connect_timeout: Duration,
        within: Duration,
        run: F,
    ) -> Result<T, QueueError>
    where
        F: Fn(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = RedisResult<T>>,
    {
        match self.once(client, connect_timeout, within, &run).await {
            Err(QueueError::Redis(error)) if is_broken_connection(&error) => {
                self.once(client, connect_timeout, within, &run).await
            }
            other => other,
        }
    }

    async fn once<T, F, Fut>(
        &self,
        client: &redis::Client,
        connect_timeout: Duration,
        within: Duration,
        run: &F,
    ) -> Result<T, QueueError>
    where
        F: Fn(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = RedisResult<T>>,
    {
        let connection = self.connection(client, connect_timeout).await?;
        match tokio::time::timeout(within, run(connection)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => {
                if !matches!(error.kind(), ErrorKind::Server(_)) {
                    self.drop_connection();
                }
                Err(QueueError::Redis(error))
            }
            Err(_) => {
                self.drop_connection();
                Err(QueueError::Timeout(within))
            }
        }
    }
}

/// A connection that died under the command (not a server's answer, not a timeout).
fn is_broken_connection(error: &redis::RedisError) -> bool {
    error.is_io_error() || error.is_connection_dropped() || error.is_connection_refusal()
}
