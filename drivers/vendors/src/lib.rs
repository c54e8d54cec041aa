//! Vendors' cyclers behind labloop's [`Cycler`](labloop_drivers::Cycler): the control API a lab's
//! cycler already speaks, instead of a bridge the lab must write.
//!
//! Every vendor adapter has the same shape. A [`VendorLink`] knows one vendor's wire: how to
//! start the lab's prepared procedure on a channel with the test's numbers in its variables, how
//! to stop it, and how to read a channel's live state and reading. [`PolledCycler`] does the rest
//! for every vendor: it polls the running channels at the workflow's rate, turns readings into
//! cycle records through the import crate's time-series core (the same rule that reads the
//! vendors' files, [`labloop_import::series`]), numbers them, and keeps a journal beside the store
//! so a restarted labloop neither starts a test twice nor loses or repeats a cycle.
//!
//! Adapters: [`maccor`] (MacNet JSON-RPC over TCP), [`arbin`] (MITS Pro CTI binary frames over
//! TCP), [`neware`] (BTS 8 XML over TCP, step files written from the protocol). Their connections
//! share [`link`].

pub mod arbin;
pub mod journal;
pub mod link;
pub mod maccor;
pub mod neware;
pub mod polled;
pub mod readings;
pub mod vendor;

pub use polled::PolledCycler;
pub use readings::{ChannelLog, Count, Pushed, Reading};
pub use vendor::{PolledOptions, VendorConfig, VendorLink, VendorState};
