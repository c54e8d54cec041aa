//! Identifiers. They are plain strings on the wire and in the store, typed here so a channel id cannot
//! be passed where an experiment id is meant.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }
    };
}

string_id!(
    /// A campaign: one optimisation run over one search space, usually named after the workflow.
    CampaignId
);
string_id!(
    /// One experiment (one cell under one protocol). Unique within the store: `<campaign>/r<round>/<slot>`.
    ExperimentId
);
string_id!(
    /// One channel of one instrument, e.g. `cycler1/ch07`.
    ChannelId
);

impl ExperimentId {
    /// The conventional id of the `slot`-th experiment of `round` in `campaign`.
    pub fn for_slot(campaign: &CampaignId, round: u32, slot: u32) -> Self {
        Self(format!("{campaign}/r{round}/{slot:03}"))
    }
}
