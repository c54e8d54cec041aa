//! Simulated instruments for labloop: a virtual battery cycler whose cells wear according to a
//! calibrated degradation model ([`degradation`]), on an accelerated clock.
//!
//! The simulator is a real driver, not a mock: it implements [`labloop_drivers::Cycler`] exactly as a
//! vendor adapter would, and it knows its own ground truth ([`expected_life`], [`SimCycler::cells`]) so
//! tests and benchmarks can score the closed loop.

mod builder;
mod cycler;
pub mod degradation;
pub mod formulation;
mod journal;
pub mod mqtt_server;
pub mod serial_server;
pub mod station;
mod truth;

pub use builder::SimCellBuilder;
pub use cycler::{ChannelSnapshot, SimClock, SimCycler, SimulatedCell};
pub use degradation::{
    Physics, ProtocolStress, STANDARD_FINISH, SimCell, expected_life, fast_charge_to_80, stress,
    stress_under,
};
pub use truth::SimulatorTruth;
