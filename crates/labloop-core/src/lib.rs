//! Domain types of labloop, with no I/O: identifiers, charging protocols and the spaces they are drawn
//! from, cycle records, and the experiment state machine.
//!
//! Every other crate speaks in these types. Nothing here knows about files, databases, networks or
//! async runtimes, so the types can be used (and tested) anywhere. Units are SI and named in the field
//! names (`_ah`, `_v`, `_ohm`, `_s`, `_c` for °C); charging currents are C-rates, as protocols are
//! written in the lab.

mod campaign;
mod experiment;
mod ids;
pub mod integral;
pub mod limits;
mod protocol;
mod record;
mod step;

pub use campaign::CampaignState;
pub use experiment::{ExperimentState, TransitionError};
pub use ids::{CampaignId, ChannelId, ExperimentId};
pub use protocol::{CcCvFinish, ChargeProtocol, ChargeStep, ProtocolSpaceError, StepProtocolSpace};
pub use record::{CURVE_RISE_TOLERANCE_V, CycleRecord, DischargeCurve, Telemetry};
pub use step::StepState;
