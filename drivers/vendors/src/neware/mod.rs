//! Neware cyclers through BTS 8's XML interface (TCP, default port 502).
//!
//! What labloop does with a Neware (labloop's `ch01` is the first channel `getdevinfo` lists,
//! `ch02` the second, ...):
//!
//! - on each new connection: `connect` with the workflow's user name and the password from the
//!   environment variable it names (BTS's factory login, admin/neware, without them);
//! - start: labloop writes the test's step file from its protocol ([`codec::step_file`]: the
//!   constant-current steps for the time their SOC window takes, the CC-CV finish, the discharge
//!   to the instrument's lowest voltage, looped for the test's cycles, the instrument's limits as
//!   its protection) into `step_dir`, then `start`s it on the channel with the cell as barcode;
//! - readings: `inquire` every `poll_interval_s` for each running channel: work status, cycle
//!   and step, current, voltage, the step's capacity and energy, test and step time;
//! - stop: `stop`; also sent once a test has all its cycles.

pub mod codec;

use crate::link::TcpLink;
use crate::readings::{Count, Reading};
use crate::vendor::{PolledOptions, VendorConfig, VendorLink, VendorState};
use async_trait::async_trait;
use codec::{Framer, Pipeline};
use labloop_drivers::{CyclingTest, DriverError};
use labloop_workflow::{InstrumentSpec, password_from_env};
use std::path::PathBuf;
use std::time::Duration;

/// How labloop reaches and drives one Neware.
#[derive(Clone, Debug)]
pub struct NewareOptions {
    /// The BTS PC.
    pub host: String,
    /// BTS's port.
    pub port: u16,
    /// User name to connect with.
    pub username: String,
    /// Its password.
    pub password: String,
    /// Where labloop writes step files.
    pub step_dir: PathBuf,
    /// The same folder as the BTS PC names it.
    pub step_dir_on_cycler: String,
    /// The cells' nominal capacity (Ah): step currents are C-rates of it.
    pub nominal_capacity_ah: f64,
    /// The discharge's end and the protection's floor (V).
    pub min_voltage_v: f64,
    /// The protection's ceiling (V).
    pub max_voltage_v: f64,
    /// The protection's current limit (A), if the workflow sets one.
    pub max_current_a: Option<f64>,
    /// How long to wait for one reply.
    pub reply_timeout: Duration,
}

impl NewareOptions {
    /// The options of a workflow's `driver: neware` instrument, its password read from the
    /// environment.
    pub fn from_spec(inst: &InstrumentSpec) -> Result<(Self, PolledOptions), String> {
        let config = VendorConfig::of(inst, "neware")?;
        let vendor = config.vendor;
        let Some(step_dir) = &vendor.step_dir else {
            return Err("the neware driver needs `vendor.step_dir`".into());
        };
        Ok((
            Self {
                host: config.host,
                port: config.port,
                username: vendor.username.clone().unwrap_or_else(|| "admin".into()),
                password: password_from_env(vendor.password_env.as_deref(), "neware")?,
                step_dir: PathBuf::from(step_dir),
                step_dir_on_cycler: vendor
                    .step_dir_on_cycler
                    .clone()
                    .unwrap_or_else(|| step_dir.clone()),
                nominal_capacity_ah: vendor.nominal_capacity_ah,
                min_voltage_v: inst.safety.min_voltage_v.unwrap_or(2.0),
                max_voltage_v: inst.safety.max_voltage_v,
                max_current_a: inst.safety.max_current_a,
                reply_timeout: config.reply_timeout,
            },
            config.polled,
        ))
    }
}

/// A BTS link to one Neware.
pub struct Bts {
    options: NewareOptions,
    link: TcpLink<Framer>,
    pipelines: tokio::sync::Mutex<Option<Vec<Pipeline>>>,
}

impl Bts {
    /// A link to the Neware `name` (it connects on first use and after any failure).
    pub fn new(name: &str, options: NewareOptions) -> Self {
        let address = format!("{}:{}", options.host, options.port);
        let connect = codec::message(&format!(
            "<cmd>connect</cmd><username>{}</username><password>{}</password><type>bfgs</type>",
            codec::escape(&options.username),
            codec::escape(&options.password)
        ));
        let link = TcpLink::new(name, &address, options.reply_timeout)
            .with_login(connect, Box::new(|reply| codec::connected(&reply)));
        Self {
            options,
            link,
            pipelines: tokio::sync::Mutex::new(None),
        }
    }

    /// Replies so far that did not follow the protocol.
    pub fn protocol_errors(&self) -> u64 {
        self.link.protocol_errors()
    }

    /// The BTS's channels, asked once.
    async fn pipelines(&self) -> Result<Vec<Pipeline>, DriverError> {
        let mut known = self.pipelines.lock().await;
        if let Some(p) = known.as_ref() {
            return Ok(p.clone());
        }
        let request = codec::message("<cmd>getdevinfo</cmd>");
        let found = self
            .link
            .query("getdevinfo", &request, |reply| codec::pipelines(&reply))
            .await?;
        *known = Some(found.clone());
        Ok(found)
    }

    async fn pipeline(&self, channel: u32) -> Result<Pipeline, DriverError> {
        let all = self.pipelines().await?;
        all.get(channel as usize)
            .cloned()
            .ok_or_else(|| DriverError::Instrument {
                instrument: self.link.name().to_owned(),
                message: format!(
                    "the BTS lists {} channels; labloop's channel {} is not among them",
                    all.len(),
                    channel + 1
                ),
            })
    }
}

#[async_trait]
impl VendorLink for Bts {
    async fn identify(&self) -> Result<String, DriverError> {
        let all = self.pipelines().await?;
        Ok(format!("Neware BTS ({} channels)", all.len()))
    }

    async fn start(
        &self,
        channel: u32,
        test: &CyclingTest,
        test_name: &str,
    ) -> Result<(), DriverError> {
        let pipeline = self.pipeline(channel).await?;
        let o = &self.options;
        let file = codec::step_file(
            test,
            o.nominal_capacity_ah,
            o.min_voltage_v,
            o.max_voltage_v,
            o.max_current_a,
        );
        let name = format!("{test_name}.xml");
        let local = o.step_dir.join(&name);
        let written =
            std::fs::create_dir_all(&o.step_dir).and_then(|()| std::fs::write(&local, file));
        written.map_err(|e| DriverError::Instrument {
            instrument: self.link.name().to_owned(),
            message: format!("writing the step file {}: {e}", local.display()),
        })?;
        let separator = if o.step_dir_on_cycler.contains('\\') {
            "\\"
        } else {
            "/"
        };
        let remote = format!(
            "{}{separator}{name}",
            o.step_dir_on_cycler.trim_end_matches(['/', '\\'])
        );
        let body = format!(
            "<cmd>start</cmd><list count=\"1\"><start {} barcode=\"{}\">{}</start></list>",
            pipeline.attributes(),
            codec::escape(&test.cell_id),
            codec::escape(&remote)
        );
        self.link
            .call("start", &codec::message(&body), |reply| {
                codec::done(&reply, "start", &pipeline)
            })
            .await
    }

    async fn configure(&self, _channel: u32, _test: &CyclingTest) -> Result<(), DriverError> {
        // The protocol is in the step file.
        Ok(())
    }

    async fn stop(&self, channel: u32) -> Result<(), DriverError> {
        let pipeline = self.pipeline(channel).await?;
        let body = format!(
            "<cmd>stop</cmd><list count=\"1\"><stop {}>true</stop></list>",
            pipeline.attributes()
        );
        self.link
            .call("stop", &codec::message(&body), |reply| {
                codec::done(&reply, "stop", &pipeline)
            })
            .await
    }

    async fn read(&self, channel: u32) -> Result<(VendorState, Option<Reading>), DriverError> {
        let pipeline = self.pipeline(channel).await?;
        let body = format!(
            "<cmd>inquire</cmd><list count=\"1\"><inquire {} aux=\"0\" barcode=\"1\">true</inquire></list>",
            pipeline.attributes()
        );
        let inquiry = self
            .link
            .query("inquire", &codec::message(&body), |reply| {
                codec::inquiry(&reply)
            })
            .await?;
        let state = codec::state(&inquiry.workstatus).ok_or_else(|| {
            self.link
                .protocol_error(format!("unknown workstatus `{}`", inquiry.workstatus))
        })?;
        let reading = Reading {
            index: 0,
            time_s: inquiry.total_time_s,
            voltage_v: inquiry.voltage_v,
            current_a: inquiry.current_a,
            capacity: Count::Unsigned(inquiry.capacity_ah),
            energy: Count::Unsigned(inquiry.energy_wh),
            temperature_c: None,
            internal_resistance_ohm: None,
            cycle: inquiry.cycle,
            step: inquiry.step,
            step_time_s: Some(inquiry.step_time_s),
        };
        if !reading.is_finite() {
            return Err(self.link.protocol_error(format!(
                "channel {}: a reading that is not a number",
                pipeline.id()
            )));
        }
        Ok((state, Some(reading)))
    }

    fn health(&self) -> Option<String> {
        self.link.health()
    }
}
