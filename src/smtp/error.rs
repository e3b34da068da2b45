//! Transaction-level errors.

use std::io;
use std::time::Duration;

use super::Reply;

/// A failure of the whole transaction. Per-recipient refusals are not errors:
/// they are reported in [`super::TxnOutcome`].
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The connection could not be established (refused, unreachable, timeout
    /// while connecting) or the server refused the session at the greeting or
    /// EHLO.
    #[error("cannot connect to {target}: {source}")]
    Connect {
        target: String,
        #[source]
        source: io::Error,
    },
    /// The connection broke (reset, closed by the peer, write error).
    #[error("I/O error talking to {target} during {stage}: {source}")]
    Io {
        target: String,
        stage: &'static str,
        #[source]
        source: io::Error,
    },
    /// No reply (or no progress writing) within the configured timeout.
    #[error("timeout after {after:?} talking to {target} during {stage}")]
    Timeout {
        target: String,
        stage: &'static str,
        after: Duration,
    },
    /// The server said something that is not valid SMTP at this point.
    #[error("protocol error talking to {target} during {stage}: {detail}")]
    Protocol {
        target: String,
        stage: &'static str,
        detail: String,
    },
    /// The server answered 421: it is closing the connection. Retry later.
    #[error("{target} is closing the connection during {stage}: {reply}")]
    ServiceUnavailable {
        target: String,
        stage: &'static str,
        reply: Reply,
    },
    /// MAIL FROM was refused (4xx or 5xx, see [`Reply::is_transient`]).
    #[error("MAIL FROM refused: {0}")]
    MailFromRejected(Reply),
    /// The message is larger than the SIZE the server announced. Nothing was
    /// sent.
    #[error("message of {size} bytes exceeds the server's SIZE limit of {limit} bytes")]
    MessageTooLarge { size: usize, limit: usize },
    /// The envelope cannot be sent (no recipients, CR/LF or `<>` in an address).
    #[error("invalid envelope: {0}")]
    InvalidEnvelope(String),
}

impl SendError {
    /// Whether retrying the same transaction later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            SendError::Connect { .. }
            | SendError::Io { .. }
            | SendError::Timeout { .. }
            | SendError::Protocol { .. }
            | SendError::ServiceUnavailable { .. } => true,
            SendError::MailFromRejected(r) => r.is_transient(),
            SendError::MessageTooLarge { .. } | SendError::InvalidEnvelope(_) => false,
        }
    }

    /// Whether the connection on which this happened is still in a known
    /// state and may be reused.
    pub(crate) fn connection_reusable(&self) -> bool {
        matches!(
            self,
            SendError::MailFromRejected(_)
                | SendError::MessageTooLarge { .. }
                | SendError::InvalidEnvelope(_)
        )
    }

    /// Short label for metrics.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            SendError::Connect { .. } => "connect_error",
            SendError::Io { .. } => "io_error",
            SendError::Timeout { .. } => "timeout",
            SendError::Protocol { .. } => "protocol_error",
            SendError::ServiceUnavailable { .. } => "service_unavailable",
            SendError::MailFromRejected(r) if r.is_transient() => "mail_from_tempfail",
            SendError::MailFromRejected(_) => "mail_from_permfail",
            SendError::MessageTooLarge { .. } => "too_large",
            SendError::InvalidEnvelope(_) => "invalid_envelope",
        }
    }
}
