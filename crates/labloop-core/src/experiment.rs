//! The experiment state machine. The store records transitions as events; the current state of an
//! experiment is the state of its last event.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Where an experiment stands. See DESIGN.md: `proposed → queued → claimed → running → predicted →
/// completed | failed | aborted`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExperimentState {
    /// Suggested by the optimizer, not yet accepted into the queue.
    Proposed,
    /// Waiting for a channel (or a worker).
    Queued,
    /// A channel or worker holds it under a lease.
    Claimed,
    /// The instrument is cycling the cell.
    Running,
    /// Early cycles are done and a predicted life is recorded.
    Predicted,
    /// Finished; its result is final.
    Completed,
    /// Failed (instrument fault, safety limit, bad data); the reason is recorded with the event.
    Failed,
    /// Stopped on purpose by a person or by the campaign.
    Aborted,
}

/// A transition the state machine does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("experiment cannot go from {from} to {to}")]
pub struct TransitionError {
    /// The current state.
    pub from: ExperimentState,
    /// The state asked for.
    pub to: ExperimentState,
}

impl ExperimentState {
    /// All states, in lifecycle order.
    pub const ALL: [ExperimentState; 8] = [
        Self::Proposed,
        Self::Queued,
        Self::Claimed,
        Self::Running,
        Self::Predicted,
        Self::Completed,
        Self::Failed,
        Self::Aborted,
    ];

    /// The state's name as stored (`"running"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Proposed => "proposed",
            Self::Queued => "queued",
            Self::Claimed => "claimed",
            Self::Running => "running",
            Self::Predicted => "predicted",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Aborted => "aborted",
        }
    }

    /// Parses a stored state name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Whether no transition leaves this state.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Aborted)
    }

    /// Checks a transition. Moving to the state one is already in is allowed (transitions are
    /// idempotent), as is any non-terminal state to `failed` or `aborted`, and an expired lease
    /// (`claimed → queued`).
    pub fn transition(self, to: Self) -> Result<Self, TransitionError> {
        use ExperimentState::*;
        let ok = self == to
            || matches!(
                (self, to),
                (Proposed, Queued)
                    | (Queued, Claimed)
                    | (Claimed, Queued)
                    | (Claimed, Running)
                    | (Running, Predicted)
                    | (Running, Completed)
                    | (Predicted, Completed)
            )
            || (!self.is_terminal() && matches!(to, Failed | Aborted));
        if ok {
            Ok(to)
        } else {
            Err(TransitionError { from: self, to })
        }
    }
}

impl fmt::Display for ExperimentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::ExperimentState::*;
    use super::*;

    #[test]
    fn happy_path_is_allowed() {
        let mut s = Proposed;
        for next in [Queued, Claimed, Running, Predicted, Completed] {
            s = s.transition(next).unwrap();
        }
        assert_eq!(s, Completed);
    }

    #[test]
    fn transitions_are_idempotent_and_leases_expire() {
        assert_eq!(Running.transition(Running), Ok(Running));
        assert_eq!(Claimed.transition(Queued), Ok(Queued));
    }

    #[test]
    fn terminal_states_are_final() {
        for t in [Completed, Failed, Aborted] {
            assert!(t.is_terminal());
            for s in ExperimentState::ALL {
                if s != t {
                    assert_eq!(t.transition(s), Err(TransitionError { from: t, to: s }));
                }
            }
        }
        assert!(Queued.transition(Predicted).is_err());
        assert_eq!(Queued.transition(Aborted), Ok(Aborted));
    }

    #[test]
    fn names_round_trip() {
        for s in ExperimentState::ALL {
            assert_eq!(ExperimentState::parse(s.as_str()), Some(s));
        }
        assert_eq!(ExperimentState::parse("exploded"), None);
    }
}
