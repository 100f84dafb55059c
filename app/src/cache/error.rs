//! Cache errors: the service treats every one as "carry on without the cache".

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("Redis did not answer within {0:?}")]
    Timeout(std::time::Duration),
    #[error("Redis is being bypassed after a recent failure")]
    Bypassed,
    #[error("Redis call failed")]
    Redis(#[from] redis::RedisError),
}
