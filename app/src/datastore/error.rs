//! What a datastore call can fail with. `graphql::error` maps each kind to a client-facing
//! code in one place; driver details stay in logs.

#[derive(Debug, thiserror::Error)]
pub enum DatastoreError {
    #[error("{entity} {id} does not exist")]
    NotFound { entity: &'static str, id: String },
    /// A uniqueness rule or an expected version refused the write.
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    InvalidInput(String),
    /// MongoDB could not be reached (nothing was written), or did not answer in time (a write
    /// may have been applied).
    #[error("the database is unavailable or did not answer in time; read the record before retrying a write")]
    Unavailable(#[source] crate::store::StoreError),
    /// A bug or corrupt data; logged where it is mapped.
    /// Write-behind only: Redis holds writes MongoDB does not have yet, so without it (or
    /// without the worker catching up) the answer could be older than an acknowledged write.
    #[error("{0}")]
    Behind(String),
    #[error("internal error")]
    Internal(#[source] crate::store::StoreError),
}

impl From<crate::store::StoreError> for DatastoreError {
    fn from(error: crate::store::StoreError) -> Self {
        use crate::store::StoreError;
        match error {
            StoreError::Unavailable(_) | StoreError::TimedOut(_) => Self::Unavailable(error),
            StoreError::Duplicate => {
                Self::Conflict("a record with the same key already exists".into())
            }
            StoreError::Contended => Self::Conflict(
                "the record kept changing under concurrent writes; read it again and retry".into(),
            ),
            StoreError::Corrupt { .. } | StoreError::Internal(_) => Self::Internal(error),
        }
    }
}
