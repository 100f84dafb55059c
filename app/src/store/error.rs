//! Store errors. The driver's own text stays here and in logs; callers get a kind.

use mongodb::error::{Error as DriverError, ErrorKind, WriteFailure};

/// MongoDB's code for a unique-index violation.
const DUPLICATE_KEY: i32 = 11000;
/// The generic server error code, and the texts of a unique-index violation that FerretDB v1
/// wraps in it when an update (`update`, `findAndModify`) hits a unique index: SQLite's, and
/// PostgreSQL's (SQLSTATE 23505). MongoDB answers 11000; FerretDB does so for inserts only.
/// This is the one place the store maps that difference (the contract suite names it).
const INTERNAL_ERROR: i32 = 1;
const UNIQUE_VIOLATION_TEXTS: [&str; 2] = [
    "UNIQUE constraint failed",
    "duplicate key value violates unique constraint",
];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// MongoDB could not be reached; nothing was written.
    #[error("MongoDB is unavailable")]
    Unavailable(#[source] Option<DriverError>),
    /// MongoDB did not answer within the operation timeout (`OPONN_MONGODB_TIMEOUT_MS`); the
    /// operation was abandoned (a write may still have been applied).
    #[error("MongoDB did not answer within {0:?}")]
    TimedOut(std::time::Duration),
    /// A unique index refused the write.
    #[error("a record with the same unique key already exists")]
    Duplicate,
    /// Other writers kept changing the record between our read and our write.
    #[error("the record kept changing under concurrent writes")]
    Contended,
    /// A stored document does not parse into the domain type.
    #[error("stored document {id} is invalid: {reason}")]
    Corrupt { id: String, reason: String },
    /// Any other driver error: a bug or a server refusing a command.
    #[error("MongoDB refused the operation")]
    Internal(#[source] DriverError),
}

impl From<crate::entity::Corrupt> for StoreError {
    fn from(crate::entity::Corrupt { id, reason }: crate::entity::Corrupt) -> Self {
        Self::Corrupt { id, reason }
    }
}

impl From<DriverError> for StoreError {
    fn from(error: DriverError) -> Self {
        match error.kind.as_ref() {
            ErrorKind::Write(WriteFailure::WriteError(write)) if write.code == DUPLICATE_KEY => {
                Self::Duplicate
            }
            ErrorKind::Command(command) if command.code == DUPLICATE_KEY => Self::Duplicate,
            ErrorKind::Command(command)
                if command.code == INTERNAL_ERROR && is_unique_violation(&command.message) =>
            {
                Self::Duplicate
            }
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

/// Whether an internal error's text is FerretDB's report of a unique-index violation.
pub(crate) fn is_unique_violation(message: &str) -> bool {
    UNIQUE_VIOLATION_TEXTS
        .iter()
        .any(|text| message.contains(text))
}

/// The positions, within an unordered bulk insert, that a unique index refused; `None` when
/// anything besides unique-index violations went wrong.
pub(super) fn duplicate_positions(error: &DriverError) -> Option<Vec<usize>> {
    let ErrorKind::InsertMany(insert) = error.kind.as_ref() else {
        return None;
    };
    if insert.write_concern_error.is_some() {
        return None;
    }
    let errors = insert.write_errors.as_ref()?;
    errors
        .iter()
        .map(|e| (e.code == DUPLICATE_KEY).then_some(e.index))
        .collect()
}
