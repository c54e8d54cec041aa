//! Arbin cyclers through MITS Pro's CTI interface (binary frames on TCP, default port 9031).
//!
//! What labloop does with an Arbin (channels 0-based on the wire, labloop's `ch01` is CTI's
//! channel 0):
//!
//! - on each new connection: login, with the workflow's user name and the password from the
//!   environment variable it names;
//! - start: *assign schedule* (the workflow's schedule, the nominal capacity as the test's
//!   capacity, the cell as its barcode, the protocol's numbers in user variables 1–16 as the
//!   workflow maps them), then *start schedule* under labloop's test name;
//! - readings: *get channel info* every `poll_interval_s` for each running channel: status, test
//!   and step time, voltage, current (negative while discharging), the charge and discharge
//!   capacity and energy counters, internal resistance. CTI's channel info carries no cycle
//!   count, so cycles are numbered live by the series core's rule (a charge after a discharge
//!   starts a cycle);
//! - stop: *stop schedule*; also sent once a test has all its cycles.
//!
//! The CTI server refusing a command (a result code other than 0) is reported in the vendor's
//! words; garbage, cut frames and replies about another channel are protocol errors
//! ([`codec`]).

pub mod codec;

use crate::link::{Answer, TcpLink};
use crate::readings::{Count, Reading};
use crate::vendor::{PolledOptions, VendorConfig, VendorLink, VendorState};
use async_trait::async_trait;
use codec::Framer;
use labloop_drivers::{CyclingTest, DriverError};
use labloop_workflow::{InstrumentSpec, VendorVariable, password_from_env};
use std::time::Duration;

/// How labloop reaches and drives one Arbin.
#[derive(Clone, Debug)]
pub struct ArbinOptions {
    /// The MITS Pro PC.
    pub host: String,
    /// CTI's port.
    pub port: u16,
    /// User name to log in with.
    pub username: String,
    /// The password (read from the environment variable the workflow names).
    pub password: String,
    /// The schedule every test runs.
    pub schedule: String,
    /// User variables (1–16) and the test value each takes.
    pub variables: Vec<(u32, VendorVariable)>,
    /// The test capacity the schedule's C-rates refer to (Ah).
    pub nominal_capacity_ah: f64,
    /// How long to wait for one reply.
    pub reply_timeout: Duration,
}

impl ArbinOptions {
    /// The options of a workflow's `driver: arbin` instrument, its password read from the
    /// environment.
    pub fn from_spec(inst: &InstrumentSpec) -> Result<(Self, PolledOptions), String> {
        let config = VendorConfig::of(inst, "arbin")?;
        let vendor = config.vendor;
        Ok((
            Self {
                host: config.host,
                port: config.port,
                username: vendor.username.clone().unwrap_or_default(),
                password: password_from_env(vendor.password_env.as_deref(), "")?,
                schedule: vendor.procedure.clone(),
                variables: vendor.numbered_variables()?,
                nominal_capacity_ah: vendor.nominal_capacity_ah,
                reply_timeout: config.reply_timeout,
            },
            config.polled,
        ))
    }
}

/// A CTI link to one Arbin.
pub struct Cti {
    options: ArbinOptions,
    link: TcpLink<Framer>,
}

impl Cti {
    /// A link to the Arbin `name` (it connects and logs in on first use and after any failure).
    pub fn new(name: &str, options: ArbinOptions) -> Self {
        let address = format!("{}:{}", options.host, options.port);
        let login = codec::login(&options.username, &options.password);
        let link = TcpLink::new(name, &address, options.reply_timeout)
            .with_login(login, Box::new(|frame| codec::login_result(&frame)));
        Self { options, link }
    }

    /// Replies so far that did not follow the protocol.
    pub fn protocol_errors(&self) -> u64 {
        self.link.protocol_errors()
    }
}

#[async_trait]
impl VendorLink for Cti {
    async fn identify(&self) -> Result<String, DriverError> {
        let login = codec::login(&self.options.username, &self.options.password);
        let (serial, channels) = self
            .link
            .query("login", &login, |frame| {
                codec::login_result(&frame)?;
                codec::login_identity(&frame).map(Answer::Reply)
            })
            .await?;
        Ok(format!(
            "Arbin MITS Pro (serial {serial}, {channels} channels)"
        ))
    }

    async fn start(
        &self,
        channel: u32,
        test: &CyclingTest,
        test_name: &str,
    ) -> Result<(), DriverError> {
        let mut variables = [None; 16];
        for &(number, variable) in &self.options.variables {
            let value = variable
                .value(&test.protocol, test.discharge_c_rate, test.cycles)
                .ok_or_else(|| DriverError::Instrument {
                    instrument: self.link.name().to_owned(),
                    message: format!(
                        "user variable {number}: the protocol {} has no such step",
                        test.protocol
                    ),
                })?;
            if let Some(slot) = (number as usize)
                .checked_sub(1)
                .and_then(|i| variables.get_mut(i))
            {
                *slot = Some(value as f32);
            }
        }
        let assign = codec::assign_schedule(
            channel,
            &self.options.schedule,
            self.options.nominal_capacity_ah as f32,
            &test.cell_id,
            &variables,
        );
        self.link
            .call("assign schedule", &assign, |frame| {
                codec::result(&frame, codec::ASSIGN_SCHEDULE_REPLY, channel)
            })
            .await?;
        let wire = u16::try_from(channel).map_err(|_| DriverError::Instrument {
            instrument: self.link.name().to_owned(),
            message: format!("channel {channel} is beyond CTI's channel numbers"),
        })?;
        let start = codec::start_schedule(wire, test_name);
        self.link
            .call("start schedule", &start, |frame| {
                codec::result(&frame, codec::START_SCHEDULE_REPLY, channel)
            })
            .await
    }

    async fn configure(&self, _channel: u32, _test: &CyclingTest) -> Result<(), DriverError> {
        // The user variables went with the schedule's assignment, before its start.
        Ok(())
    }

    async fn stop(&self, channel: u32) -> Result<(), DriverError> {
        let stop = codec::stop_schedule(channel);
        self.link
            .call("stop schedule", &stop, |frame| {
                codec::result(&frame, codec::STOP_SCHEDULE_REPLY, channel)
            })
            .await
    }

    async fn read(&self, channel: u32) -> Result<(VendorState, Option<Reading>), DriverError> {
        let wire = u16::try_from(channel).map_err(|_| DriverError::Instrument {
            instrument: self.link.name().to_owned(),
            message: format!("channel {channel} is beyond CTI's channel numbers"),
        })?;
        let request = codec::channel_info(wire);
        let info = self
            .link
            .query("channel info", &request, |frame| {
                codec::channel_info_reply(&frame, channel)
            })
            .await?;
        let state = codec::state(info.status).ok_or_else(|| {
            self.link
                .protocol_error(format!("unknown channel status {}", info.status))
        })?;
        if info.comm_failure {
            return Err(DriverError::Instrument {
                instrument: self.link.name().to_owned(),
                message: format!(
                    "channel {channel}: MITS reports a communication failure with the channel"
                ),
            });
        }
        let reading = Reading {
            index: 0,
            time_s: info.test_time_s,
            voltage_v: f64::from(info.voltage_v),
            current_a: f64::from(info.current_a),
            capacity: Count::Separate {
                charge: f64::from(info.charge_capacity_ah),
                discharge: f64::from(info.discharge_capacity_ah),
            },
            energy: Count::Separate {
                charge: f64::from(info.charge_energy_wh),
                discharge: f64::from(info.discharge_energy_wh),
            },
            temperature_c: None,
            internal_resistance_ohm: Some(f64::from(info.internal_resistance_ohm))
                .filter(|r| *r > 0.0),
            cycle: 0,
            step: 0,
            step_time_s: Some(info.step_time_s),
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

    fn counts_cycles(&self) -> bool {
        false
    }
}
