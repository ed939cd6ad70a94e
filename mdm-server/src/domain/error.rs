use thiserror::Error;

/// A rule of the domain refused an input. The message is written for the person who sent it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DomainError {
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
}

impl DomainError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        DomainError::Invalid {
            field,
            message: message.into(),
        }
    }

    pub fn field(&self) -> &'static str {
        match self {
            DomainError::Invalid { field, .. } => field,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            DomainError::Invalid { message, .. } => message,
        }
    }
}

/// A rule refused a transition (a lease, a return, a case's next step) because something must
/// happen first. `kind` is the problem type the API answers with; `detail` tells the person what
/// must happen first.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{detail}")]
pub struct Refusal {
    pub kind: &'static str,
    pub detail: String,
    /// The stable code of the step that must happen first, where the refusal is about a
    /// sequence of steps (the wipe gate's `not_acknowledged`, as the history view names it).
    pub missing_step: Option<&'static str>,
}

impl Refusal {
    pub fn new(kind: &'static str, detail: impl Into<String>) -> Self {
        Refusal {
            kind,
            detail: detail.into(),
            missing_step: None,
        }
    }

    pub fn missing(mut self, step: &'static str) -> Self {
        self.missing_step = Some(step);
        self
    }
}
