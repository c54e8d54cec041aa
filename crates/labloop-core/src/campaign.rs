//! Where a campaign stands, as the store records it.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A campaign's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CampaignState {
    /// An engine runs it (or will, on resume after a crash).
    Running,
    /// Stopped until resumed (Ctrl-C, a request, a step's `pause_campaign`, a failing store).
    Paused,
    /// Reached its stopping rule.
    Completed,
    /// Ended by an error.
    Failed,
    /// Stopped for good by a person.
    Aborted,
}

impl CampaignState {
    /// Every state.
    pub const ALL: [CampaignState; 5] = [
        CampaignState::Running,
        CampaignState::Paused,
        CampaignState::Completed,
        CampaignState::Failed,
        CampaignState::Aborted,
    ];

    /// The name the store writes.
    pub fn as_str(self) -> &'static str {
        match self {
            CampaignState::Running => "running",
            CampaignState::Paused => "paused",
            CampaignState::Completed => "completed",
            CampaignState::Failed => "failed",
            CampaignState::Aborted => "aborted",
        }
    }

    /// The state a stored name means, if any.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Whether the campaign is over (completed or aborted): nothing resumes it.
    pub fn is_over(self) -> bool {
        matches!(self, CampaignState::Completed | CampaignState::Aborted)
    }
}

impl fmt::Display for CampaignState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl PartialEq<&str> for CampaignState {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<str> for CampaignState {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in CampaignState::ALL {
            assert_eq!(CampaignState::parse(s.as_str()), Some(s));
        }
        assert_eq!(CampaignState::parse("done"), None);
        assert!(CampaignState::Completed == "completed");
    }
}
