//! Store errors. The driver's own text stays here and in logs; callers get a kind.

use mongodb::error::{Error as DriverError, ErrorKind, WriteFailure};

/// MongoDB's code for a unique-index violation.
const DUPLICATE_KEY: i32 = 11000;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// MongoDB could not be reached in time; nothing was written.
    #[error("MongoDB is unavailable")]
    Unavailable(#[source] Option<DriverError>),
    /// A unique index refused the write.
    #[error("a record with the same unique key already exists")]
    Duplicate,
    /// A stored document does not parse into the domain type.
    #[error("stored document {id} is invalid: {reason}")]
    Corrupt { id: String, reason: String },
    /// Any other driver error: a bug or a server refusing a command.
    #[error("MongoDB refused the operation")]
    Internal(#[source] DriverError),
}

impl From<DriverError> for StoreError {
    fn from(error: DriverError) -> Self {
        match error.kind.as_ref() {
            ErrorKind::Write(WriteFailure::WriteError(write)) if write.code == DUPLICATE_KEY => {
                Self::Duplicate
            }
            ErrorKind::Command(command) if command.code == DUPLICATE_KEY => Self::Duplicate,
            ErrorKind::InsertMany(insert)
                if insert
                    .write_errors
                    .as_ref()
                    .is_some_and(|errors| errors.iter().all(|e| e.code == DUPLICATE_KEY)) =>
            {
                Self::Duplicate
            }
            ErrorKind::Io(_)
            | ErrorKind::ServerSelection { .. }
            | ErrorKind::ConnectionPoolCleared { .. }
            | ErrorKind::DnsResolve { .. } => Self::Unavailable(Some(error)),
            _ if error.contains_label(mongodb::error::RETRYABLE_WRITE_ERROR) => {
                Self::Unavailable(Some(error))
            }
            _ => Self::Internal(error),
        }
    }
}
