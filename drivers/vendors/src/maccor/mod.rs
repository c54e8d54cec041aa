//! Maccor cyclers through MacNet's JSON-RPC interface (TCP, default port 57570).
//!
//! What labloop does with a Maccor, operation by operation (channels 0-based on the wire, labloop's
//! `ch01` is MacNet's channel 0):
//!
//! - start: 6/2 *start test with procedure* (the workflow's procedure, labloop's test name, the
//!   cell in the comment, the nominal capacity in `Crate`), then 6/9 *set variable* for each of
//!   the procedure variables the workflow maps (C-rates, CV voltage, cycles). The procedure should
//!   open with a short rest so the variables are set before it reads them.
//! - readings: 4/7 *status and readings of one channel*, every `poll_interval_s` for each running
//!   channel: state, cycle and step counters, test and step time, the step's capacity and
//!   energy, current (negative while discharging) and voltage. Where a step ended between two
//!   polls, its end is placed by the new step's step time and its last part counted at its
//!   current, so per-step counters lose nothing at the poll rate.
//! - stop: 6/5 *reset channel*; also sent once a test has all its cycles (the procedure cannot
//!   know labloop's count unless a variable carries it).
//! - identify: 1/2 *general system information*.
//!
//! A reply that is not the answer to the request (garbage, truncated, another operation's or
//! another channel's) counts as a protocol error and the connection is opened afresh, so one bad
//! message never puts later replies out of step.

pub mod codec;

use crate::link::TcpLink;
use crate::readings::{Count, Reading};
use crate::vendor::{PolledOptions, VendorConfig, VendorLink, VendorState};
use async_trait::async_trait;
use codec::Framer;
use labloop_drivers::{CyclingTest, DriverError};
use labloop_workflow::{InstrumentSpec, VendorVariable};
use serde_json::{Map, Value, json};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How labloop reaches and drives one Maccor.
#[derive(Clone, Debug)]
pub struct MaccorOptions {
    /// The Maccor PC.
    pub host: String,
    /// MacNet's JSON port.
    pub port: u16,
    /// The procedure every test runs.
    pub procedure: String,
    /// Procedure variables (1–16) and the test value each takes.
    pub variables: Vec<(u32, VendorVariable)>,
    /// What the procedure's C-rates refer to (Ah).
    pub nominal_capacity_ah: f64,
    /// How long to wait for one reply.
    pub reply_timeout: Duration,
}

impl MaccorOptions {
    /// The options of a workflow's `driver: maccor` instrument (validated already: an error here
    /// names what the validator would have).
    pub fn from_spec(inst: &InstrumentSpec) -> Result<(Self, PolledOptions), String> {
        let config = VendorConfig::of(inst, "maccor")?;
        let vendor = config.vendor;
        Ok((
            Self {
                host: config.host,
                port: config.port,
                procedure: vendor.procedure.clone(),
                variables: vendor.numbered_variables()?,
                nominal_capacity_ah: vendor.nominal_capacity_ah,
                reply_timeout: config.reply_timeout,
            },
            config.polled,
        ))
    }
}

/// A MacNet JSON link to one Maccor: one request at a time, as MacNet serves them.
pub struct MacNet {
    options: MaccorOptions,
    link: TcpLink<Framer>,
    next_id: AtomicU64,
}

impl MacNet {
    /// A link to the Maccor `name` (it connects on first use and again after any failure).
    pub fn new(name: &str, options: MaccorOptions) -> Self {
        let address = format!("{}:{}", options.host, options.port);
        Self {
            link: TcpLink::new(name, &address, options.reply_timeout),
            options,
            next_id: AtomicU64::new(1),
        }
    }

    /// Replies so far that did not follow the protocol.
    pub fn protocol_errors(&self) -> u64 {
        self.link.protocol_errors()
    }

    fn request(
        &self,
        fclass: u16,
        fnum: u16,
        chan: Option<u32>,
        mut params: Map<String, Value>,
    ) -> Vec<u8> {
        if let Some(chan) = chan {
            params.insert("Chan".into(), chan.into());
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        codec::request(id, fclass, fnum, params)
    }

    /// One operation that changes the instrument: sent once.
    async fn call(
        &self,
        fclass: u16,
        fnum: u16,
        chan: Option<u32>,
        params: Map<String, Value>,
    ) -> Result<Map<String, Value>, DriverError> {
        let request = self.request(fclass, fnum, chan, params);
        let what = format!("MacNet ({fclass}, {fnum})");
        self.link
            .call(&what, &request, |m| codec::reply(m, fclass, fnum, chan))
            .await
    }

    /// An operation that changes nothing, tried again on a new connection after a failure.
    async fn query(
        &self,
        fclass: u16,
        fnum: u16,
        chan: Option<u32>,
    ) -> Result<Map<String, Value>, DriverError> {
        let request = self.request(fclass, fnum, chan, Map::new());
        let what = format!("MacNet ({fclass}, {fnum})");
        self.link
            .query(&what, &request, |m| codec::reply(m, fclass, fnum, chan))
            .await
    }
}

fn params(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

#[async_trait]
impl VendorLink for MacNet {
    async fn identify(&self) -> Result<String, DriverError> {
        let info = self.query(1, 2, None).await?;
        let text = |k: &str| info.get(k).map(|v| v.to_string()).unwrap_or_default();
        Ok(format!(
            "Maccor {} (system type {}, {} test channels)",
            text("SystemID").trim_matches('"'),
            text("SystemType"),
            text("TestChannels")
        ))
    }

    async fn start(
        &self,
        channel: u32,
        test: &CyclingTest,
        test_name: &str,
    ) -> Result<(), DriverError> {
        let comment: String = format!("labloop {} cell {}", test.key, test.cell_id)
            .chars()
            .filter(char::is_ascii)
            .take(80)
            .collect();
        let start = params(json!({
            "TestName": test_name,
            "ProcName": self.options.procedure,
            "Comment": comment,
            "Crate": self.options.nominal_capacity_ah,
            "ChamberNum": 0,
            "StartCycle": 0,
            "TotCycles": 0,
            "Mass": 1,
            "VGain": 0,
            "AbsTRepAlign": 0,
            "ParallelR": 0,
            "VDivHiR": 0,
            "VDivLoR": 0,
            "CANpos": -1,
            "CANprof": "",
            "RegimeName": "",
        }));
        self.call(6, 2, Some(channel), start).await.map(drop)
    }

    async fn configure(&self, channel: u32, test: &CyclingTest) -> Result<(), DriverError> {
        for &(number, variable) in &self.options.variables {
            let Some(value) = variable.value(&test.protocol, test.discharge_c_rate, test.cycles)
            else {
                return Err(DriverError::Instrument {
                    instrument: self.link.name().to_owned(),
                    message: format!(
                        "procedure variable {number}: the protocol {} has no such step",
                        test.protocol
                    ),
                });
            };
            let set = params(json!({"VarNum": number, "Value": value}));
            self.call(6, 9, Some(channel), set).await?;
        }
        Ok(())
    }

    async fn stop(&self, channel: u32) -> Result<(), DriverError> {
        self.call(6, 5, Some(channel), Map::new()).await.map(drop)
    }

    async fn read(&self, channel: u32) -> Result<(VendorState, Option<Reading>), DriverError> {
        let result = self.query(4, 7, Some(channel)).await?;
        let status = codec::status(result).map_err(|e| self.link.protocol_error(e))?;
        let state = codec::state(status.stat).ok_or_else(|| {
            self.link
                .protocol_error(format!("unknown channel state Stat {}", status.stat))
        })?;
        let reading = Reading {
            index: status.last_rec_num,
            time_s: status.test_time,
            voltage_v: status.voltage,
            current_a: status.current,
            capacity: Count::Unsigned(status.capacity),
            energy: Count::Unsigned(status.energy),
            temperature_c: None,
            internal_resistance_ohm: None,
            cycle: status.cycle,
            step: status.step,
            step_time_s: Some(status.step_time),
        };
        if !reading.is_finite() {
            return Err(self
                .link
                .protocol_error(format!("channel {channel}: a reading that is not a number")));
        }
        Ok((state, Some(reading)))
    }

    fn health(&self) -> Option<String> {
        self.link.health()
    }
}
