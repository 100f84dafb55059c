//! Cache errors: the service treats every one as "carry on without the cache".

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("Redis did not answer within {0:?}")]
    Timeout(std::time::Duration),
    #[error("Redis is being bypassed after a recent failure")]
    Bypassed,
    #[error("Redis call failed: {0}")]
    Redis(#[from] redis::RedisError),
    #[error(transparent)]
    Client(#[from] super::ClientError),
}

/// Cache writes still waiting for Redis when [`super::Cache::settle`] gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "Redis did not take {records} cached record(s) and {result_ranges} range(s) of cached query \
     results: MongoDB holds the new versions, but servers may answer with the older cached ones \
     until their TTL ends (OPONN_CACHE_TTL_SECS, OPONN_CACHE_RESULT_TTL_SECS)"
)]
pub struct Unsettled {
    pub records: usize,
    pub result_ranges: usize,
}
