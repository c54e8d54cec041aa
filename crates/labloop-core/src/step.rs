//! Where one step of an experiment stands, as its last recorded event says.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A step's state, as the store records each of its events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    /// An attempt began (and, after a crash, is still under way).
    Started,
    /// The step waits for a person (`approve`).
    Waiting,
    /// The attempt succeeded; the event's detail holds the step's outputs.
    Succeeded,
    /// The attempt failed; the detail says why. The step's policy decides what follows.
    Failed,
    /// Every attempt failed and the step's policy skipped it; later steps ran.
    Skipped,
    /// Not a state: a note on the attempt under way (a stale test labloop stopped, say), kept
    /// in the step's history; the step stands where its last other event left it.
    Note,
}

impl StepState {
    /// Every state.
    pub const ALL: [StepState; 6] = [
        StepState::Started,
        StepState::Waiting,
        StepState::Succeeded,
        StepState::Failed,
        StepState::Skipped,
        StepState::Note,
    ];

    /// The name the store writes.
    pub fn as_str(self) -> &'static str {
        match self {
            StepState::Started => "started",
            StepState::Waiting => "waiting",
            StepState::Succeeded => "succeeded",
            StepState::Failed => "failed",
            StepState::Skipped => "skipped",
            StepState::Note => "note",
        }
    }

    /// The state a stored name means, if any.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Whether the step is behind the experiment (succeeded or skipped): a resume skips it.
    pub fn is_done(self) -> bool {
        matches!(self, StepState::Succeeded | StepState::Skipped)
    }
}

impl fmt::Display for StepState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl PartialEq<&str> for StepState {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in StepState::ALL {
            assert_eq!(StepState::parse(s.as_str()), Some(s));
            assert_eq!(s, s.as_str());
        }
        assert_eq!(StepState::parse("running"), None);
        assert!(StepState::Skipped.is_done() && !StepState::Failed.is_done());
    }
}
