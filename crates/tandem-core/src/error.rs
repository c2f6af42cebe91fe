//! What to do about an error.
//!
//! Every error a stage returns says whether retrying can help. Transient errors (connection
//! lost, deadlock, serialization failure, timeout) are retried with capped exponential
//! backoff; definite errors (bad mapping, value out of range, slot lost) park the row or
//! halt the mapping, and carry advice for the DBA.

use std::error::Error as StdError;

/// Whether an error may go away on retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    Transient,
    Definite,
}

/// An error raised by a source, transport or sink.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// Retrying can help: the connection dropped, a deadlock, a timeout.
    #[error("{what}")]
    Transient {
        what: String,
        #[source]
        source: Option<Box<dyn StdError + Send + Sync>>,
    },
    /// Retrying will not help; `advice` tells the DBA what will.
    #[error("{what}. {advice}")]
    Definite {
        what: String,
        advice: String,
        #[source]
        source: Option<Box<dyn StdError + Send + Sync>>,
    },
}

impl StageError {
    pub fn transient(
        what: impl Into<String>,
        source: impl StdError + Send + Sync + 'static,
    ) -> Self {
        StageError::Transient {
            what: what.into(),
            source: Some(Box::new(source)),
        }
    }

    pub fn definite(what: impl Into<String>, advice: impl Into<String>) -> Self {
        StageError::Definite {
            what: what.into(),
            advice: advice.into(),
            source: None,
        }
    }

    pub fn definite_from(
        what: impl Into<String>,
        advice: impl Into<String>,
        source: impl StdError + Send + Sync + 'static,
    ) -> Self {
        StageError::Definite {
            what: what.into(),
            advice: advice.into(),
            source: Some(Box::new(source)),
        }
    }

    pub fn class(&self) -> ErrorClass {
        match self {
            StageError::Transient { .. } => ErrorClass::Transient,
            StageError::Definite { .. } => ErrorClass::Definite,
        }
    }

    /// The message with its chain of causes, for logs and `/status`.
    pub fn report(&self) -> String {
        let mut s = self.to_string();
        let mut cur = StdError::source(self);
        while let Some(e) = cur {
            s.push_str(": ");
            s.push_str(&e.to_string());
            cur = e.source();
        }
        s
    }
}
