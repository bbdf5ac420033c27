//! A zone's states and the one function that moves between them.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ZoneState {
    Creating,
    Running,
    Stopping,
    Stopped { reason: String },
    Failed { reason: String },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a zone cannot go from {from} to {to}")]
pub struct TransitionError {
    pub from: &'static str,
    pub to: &'static str,
}

impl ZoneState {
    pub fn name(&self) -> &'static str {
        match self {
            ZoneState::Creating => "creating",
            ZoneState::Running => "running",
            ZoneState::Stopping => "stopping",
            ZoneState::Stopped { .. } => "stopped",
            ZoneState::Failed { .. } => "failed",
        }
    }

    pub fn is_terminal(&self) -> bool {
        matches!(self, ZoneState::Stopped { .. } | ZoneState::Failed { .. })
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            ZoneState::Stopped { reason } | ZoneState::Failed { reason } => Some(reason),
            _ => None,
        }
    }

    /// The only way a zone changes state. Terminal states are final; anything live may fail.
    pub fn transition(&self, next: ZoneState) -> Result<ZoneState, TransitionError> {
        use ZoneState::*;
        let allowed = matches!(
            (self, &next),
            (Creating, Running | Stopping) | (Running, Stopping) | (Creating | Running | Stopping, Stopped { .. } | Failed { .. })
        );
        if allowed {
            Ok(next)
        } else {
            Err(TransitionError { from: self.name(), to: next.name() })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ZoneState::*;
    use super::*;

    fn failed() -> ZoneState {
        Failed { reason: "x".into() }
    }

    #[test]
    fn the_normal_life() {
        let s = Creating.transition(Running).unwrap();
        let s = s.transition(Stopping).unwrap();
        let s = s.transition(Stopped { reason: "stopped by request".into() }).unwrap();
        assert!(s.is_terminal());
    }

    #[test]
    fn anything_live_can_fail_and_terminal_is_final() {
        for live in [Creating, Running, Stopping] {
            assert!(live.transition(failed()).is_ok());
        }
        assert!(failed().transition(Running).is_err());
        assert!(failed().transition(failed()).is_err());
        assert_eq!(Running.transition(Creating), Err(TransitionError { from: "running", to: "creating" }));
    }
}
