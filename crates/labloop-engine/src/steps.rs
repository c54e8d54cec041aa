//! What each kind of step does. Every instrument command carries an idempotency key
//! (`<experiment>/<step>/<attempt>`), and every measurement is stored before the next is asked for.

use crate::channels::Channel;
use crate::early::EarlyWindow;
use crate::events::EngineEvent;
use crate::subject::{StepCall, StepFailure, StepOutcome};
use labloop_core::{CcCvFinish, ChargeProtocol, CycleRecord, ExperimentState, Telemetry};
use labloop_drivers::{CellOrder, CyclingTest, DriverError};
use labloop_predict::{EarlyData, FeatureSet, Prediction, Predictor};
use labloop_store::{PredictionRow, StoreError};
use labloop_workflow::{StepAction, StepSpec, interpolate, parse_duration};
use serde_json::{Value, json};
use std::time::Duration;

impl StepCall<'_> {
    /// Cycles the cell had in earlier channel steps.
    fn cycles_before(&self) -> u32 {
        self.outputs
            .values()
            .filter_map(|v| v.get("cycles_run").and_then(Value::as_u64))
            .sum::<u64>() as u32
    }

    /// The `cycle` step's window and its records, in stored (absolute) cycle numbers.
    pub(crate) async fn early_records(
        &self,
        needed_by: &str,
    ) -> Result<(EarlyWindow, Vec<CycleRecord>), StepFailure> {
        let window = self
            .outputs
            .values()
            .find_map(EarlyWindow::of_outputs)
            .ok_or_else(|| {
                StepFailure::Failed(format!("no `cycle` step ran before `{needed_by}`"))
            })?;
        let records = window.records(&self.run.ctx.store, &self.run.id).await?;
        Ok((window, records))
    }

    /// Runs the step's action (its resources are already held).
    pub async fn execute(self, spec: &StepSpec) -> Result<StepOutcome, StepFailure> {
        let ctx = &self.run.ctx;
        match spec.action() {
            StepAction::BuildCell(build) => {
                let builder = ctx.builders.get(&build.robot).ok_or_else(|| {
                    StepFailure::Failed(format!("no cell builder `{}`", build.robot))
                })?;
                let cell = builder
                    .build(CellOrder {
                        key: self.key(),
                        formulation: self.run.formulation.clone(),
                        parameters: self.run.parameters.clone(),
                        electrolyte_ul: build.electrolyte_ul,
                        cathode: build.cathode.clone().unwrap_or_default(),
                        anode: build.anode.clone().unwrap_or_default(),
                        separator: build.separator.clone().unwrap_or_default(),
                    })
                    .await?;
                if !cell.qc.crimp_ok {
                    // A leaking cell must not be cycled; a retry builds another (a new key).
                    return Err(StepFailure::Failed(format!(
                        "cell {} failed its crimp check on {}",
                        cell.cell_id, build.robot
                    )));
                }
                ctx.store.set_cell(&self.run.id, &cell.cell_id).await?;
                Ok(StepOutcome(json!({
                    "cell_id": cell.cell_id,
                    "ocv_v": cell.qc.ocv_v,
                    "mass_g": cell.qc.mass_g,
                    "dispensed_ul": cell.dispensed_ul,
                })))
            }
            StepAction::Rest(rest) => {
                let s = parse_duration(&rest.duration).map_err(StepFailure::Failed)?;
                tokio::time::sleep(ctx.wall(s)).await;
                Ok(StepOutcome(json!({})))
            }
            StepAction::Formation(f) => {
                let protocol = ChargeProtocol::equal_steps(
                    &[f.c_rate],
                    0.8,
                    CcCvFinish {
                        c_rate: f.c_rate,
                        cv_voltage_v: self.run.protocol.finish.cv_voltage_v,
                    },
                );
                let cycled = self.cycle(protocol, f.c_rate, f.cycles, None).await?;
                cycled.complete(f.cycles)?;
                let records = cycled.records;
                let last = records.last();
                Ok(StepOutcome(json!({
                    "cycles_run": records.len(),
                    "capacity_ah": last.map(|r| r.discharge_capacity_ah),
                    "coulombic_efficiency": last.map(|r| r.discharge_capacity_ah / r.charge_capacity_ah.max(1e-12)),
                })))
            }
            StepAction::Cycle(c) => {
                let first = self.cycles_before() + 1;
                let cycled = self
                    .cycle(
                        self.run.protocol.clone(),
                        c.discharge_c_rate,
                        c.cycles,
                        None,
                    )
                    .await?;
                cycled.complete(c.cycles)?;
                let records = cycled.records;
                Ok(StepOutcome(json!({
                    "cycles_run": records.len(),
                    "cycles": records.len(),
                    "first_cycle": first,
                    "last_capacity_ah": records.last().map(|r| r.discharge_capacity_ah),
                })))
            }
            StepAction::Predict(p) => match &p.plugin {
                Some(plugin) => self.plugin_predict(plugin, &p.model).await,
                None => self.predict().await,
            },
            StepAction::Run(run) => {
                let op = crate::plugin_steps::PluginOp::Step(&run.step);
                self.plugin_step(&run.plugin, op, &run.inputs).await
            }
            StepAction::Measure(m) => {
                let op = crate::plugin_steps::PluginOp::Measurement(&m.measurement);
                self.plugin_step(&m.plugin, op, &m.inputs).await
            }
            StepAction::CycleToEol(eol) => self.cycle_to_eol(eol).await,
            StepAction::Approve(a) => self.approve(&a.message).await,
        }
    }

    /// Runs a cycling test on the experiment's channel and stores every record; returns the records
    /// of this test (those stored before a restart included) and the instrument's fault, if it
    /// stopped the test on one. `end_of_life` may end it early.
    async fn cycle(
        &self,
        protocol: ChargeProtocol,
        discharge_c_rate: f64,
        cycles: u32,
        end_of_life: Option<&(dyn Fn(&CycleRecord) -> bool + Sync)>,
    ) -> Result<Cycled, StepFailure> {
        let ctx = &self.run.ctx;
        let store = &ctx.store;
        let channel = self
            .channel
            .ok_or_else(|| StepFailure::Failed("no channel held".into()))?;
        let before = self.cycles_before();
        let interlock = ctx
            .safety
            .get(channel.cycler.name())
            .copied()
            .unwrap_or_default();
        let limits = interlock.limits;
        if let Some(rate) = protocol
            .c_rates()
            .into_iter()
            .find(|r| *r > limits.max_c_rate)
        {
            return Err(StepFailure::Failed(format!(
                "safety: {rate} C exceeds {}'s limit of {} C",
                channel.cycler.name(),
                limits.max_c_rate
            )));
        }
        let test = CyclingTest {
            key: self.key(),
            cell_id: self.cell_id(),
            cycles_before: before,
            formulation: self.run.formulation.clone(),
            parameters: self.run.parameters.clone(),
            protocol,
            discharge_c_rate,
            cycles,
        };
        match channel.cycler.start(&channel.id, test.clone()).await {
            Err(DriverError::Busy { .. }) => {
                self.free_busy_channel(channel).await?;
                channel.cycler.start(&channel.id, test).await?;
            }
            other => other?,
        }
        store
            .transition(&self.run.id, ExperimentState::Running, None)
            .await
            .or_else(|e| match e {
                // A predicted experiment cycling on to end of life stays `predicted`.
                StoreError::Transition { .. } => Ok(ExperimentState::Predicted),
                other => Err(other),
            })?;
        let stored = store.last_cycle(&self.run.id).await?;
        let mut next_seq = u64::from(stored.saturating_sub(before)) + 1;
        let mut records: Vec<CycleRecord> = store
            .records(&self.run.id)
            .await?
            .into_iter()
            .filter(|r| r.cycle > before && r.cycle <= before + cycles)
            .collect();
        if records.iter().any(|r| end_of_life.is_some_and(|f| f(r)))
            || records.len() as u32 >= cycles
        {
            return Ok(Cycled {
                records,
                fault: None,
            });
        }
        loop {
            let batch = tokio::time::timeout(
                ctx.options.record_timeout,
                channel.cycler.records(&channel.id, next_seq),
            )
            .await
            .map_err(|_| {
                StepFailure::Failed(format!(
                    "{}: no cycle record for {:?}",
                    channel.id, ctx.options.record_timeout
                ))
            })??;
            let fresh: Vec<Telemetry> = batch
                .records
                .iter()
                .filter(|t| t.seq >= next_seq && t.seq <= u64::from(cycles))
                .map(|t| {
                    let mut t = t.clone();
                    t.record.cycle = before + t.seq as u32;
                    t
                })
                .collect();
            if let Some(seq) = fresh.last().map(|t| t.seq) {
                // Stored before the next request acknowledges it.
                store.append_records(&self.run.id, &fresh).await?;
                next_seq = seq + 1;
                ctx.emit(EngineEvent::CycleRecorded {
                    experiment: self.run.id.clone(),
                    records: fresh.len(),
                });
                for Telemetry { record: r, .. } in fresh {
                    if let Some(why) = interlock.violation(channel.cycler.name(), &r) {
                        // The record is stored; only this channel's test stops.
                        let stopped = channel.cycler.stop(&channel.id).await;
                        let how = match stopped {
                            Ok(()) => "channel stopped".to_owned(),
                            Err(e) => format!("stopping the channel failed: {e}"),
                        };
                        return Err(StepFailure::Unsafe(format!("{why}; {how}")));
                    }
                    let ended = end_of_life.is_some_and(|f| f(&r));
                    records.push(r);
                    if ended {
                        return Ok(Cycled {
                            records,
                            fault: None,
                        });
                    }
                }
            }
            let done = next_seq > u64::from(cycles)
                || (batch.finished && next_seq > batch.records.last().map_or(0, |t| t.seq));
            if done {
                if let Some(fault) = &batch.fault {
                    tracing::warn!(experiment = %self.run.id, channel = %channel.id, %fault, "the instrument stopped the test on a fault");
                }
                return Ok(Cycled {
                    records,
                    fault: batch.fault,
                });
            }
        }
    }

    /// The channel runs a test with another key. Only a test labloop's own records show to be stale
    /// is stopped — an earlier attempt of this experiment, or a test of an experiment of this store
    /// that has ended — and that is said aloud and recorded. Anything else is someone's test: the
    /// step fails naming it, and the channel is left alone.
    async fn free_busy_channel(&self, channel: &Channel) -> Result<(), StepFailure> {
        let loaded = channel.cycler.loaded_test(&channel.id).await?;
        let Some(loaded) = loaded else {
            return Err(StepFailure::Failed(format!(
                "{} is busy with a test the instrument does not name; labloop does not stop a test it cannot tell is its own: free the channel on the instrument and retry",
                channel.id
            )));
        };
        let experiment = experiment_of(&loaded.key).unwrap_or("");
        let state = if experiment.is_empty() {
            None
        } else {
            self.run.ctx.store.experiment_state(experiment).await?
        };
        let stale = experiment == self.run.id || state.is_some_and(|s| s.is_terminal());
        if !stale {
            return Err(StepFailure::Failed(format!(
                "{} is busy with test {}, which {}; labloop leaves it running: free the channel on the instrument and retry",
                channel.id,
                loaded.key,
                match state {
                    Some(s) => format!("belongs to experiment {experiment}, still {s}"),
                    None => "labloop did not start".to_owned(),
                }
            )));
        }
        let note = format!(
            "stopped test {} left on {} by {} (an earlier attempt, per this store)",
            loaded.key,
            channel.id,
            if experiment == self.run.id {
                "this experiment".to_owned()
            } else {
                format!("ended experiment {experiment}")
            }
        );
        tracing::warn!(experiment = %self.run.id, channel = %channel.id, stale = %loaded.key, "{note}");
        self.run
            .ctx
            .store
            .step_event(
                &self.run.id,
                self.step_id,
                self.attempt,
                labloop_core::StepState::Note,
                Some(&note),
            )
            .await?;
        channel.cycler.stop(&channel.id).await?;
        Ok(())
    }

    async fn predict(&self) -> Result<StepOutcome, StepFailure> {
        let ctx = &self.run.ctx;
        // The early cycles: those of the `cycle` step, counted from its first.
        let (window, early) = self.early_records("predict").await?;
        let records = window.renumbered(early);
        let predictor = &ctx.predictor;
        let features = EarlyData::from_records(&records, predictor.window())
            .map_err(|e| StepFailure::Failed(e.to_string()))?
            .features();
        let prediction = predictor
            .predict(std::slice::from_ref(&features))
            .map_err(|e| StepFailure::Failed(e.to_string()))?[0];
        let features_json = serde_json::to_string(
            &features
                .iter()
                .collect::<std::collections::BTreeMap<_, _>>(),
        )
        .unwrap_or_else(|_| "{}".into());
        let row = prediction_row(predictor.as_ref(), &features, &prediction, features_json);
        self.record_predicted(row).await
    }

    /// Records the cell's prediction, marks it predicted and says so; the step's outputs.
    pub(crate) async fn record_predicted(
        &self,
        row: PredictionRow,
    ) -> Result<StepOutcome, StepFailure> {
        let ctx = &self.run.ctx;
        let store = &ctx.store;
        store.record_prediction(&self.run.id, &row).await?;
        store
            .transition(&self.run.id, ExperimentState::Predicted, None)
            .await?;
        ctx.emit(EngineEvent::ExperimentPredicted {
            experiment: self.run.id.clone(),
            protocol: self.run.label.clone(),
            cycle_life: row.cycle_life,
            sigma: row.sigma,
            out_of_domain: row.out_of_domain.clone(),
        });
        Ok(StepOutcome(
            json!({"cycle_life": row.cycle_life, "sigma": row.sigma}),
        ))
    }

    async fn cycle_to_eol(
        &self,
        eol: &labloop_workflow::CycleToEolStep,
    ) -> Result<StepOutcome, StepFailure> {
        let ctx = &self.run.ctx;
        let (window, early_records) = self.early_records("cycle_to_eol").await?;
        let (first, early) = (u64::from(window.first_cycle), u64::from(window.cycles));
        let nominal = eol.nominal_capacity_ah.unwrap_or_else(|| {
            early_records
                .first()
                .map_or(1.0, |r| r.discharge_capacity_ah)
        });
        let threshold = eol.end_fraction * nominal;
        let remaining = (eol.max_cycles as u64).saturating_sub(early) as u32;
        let discharge = ctx
            .workflow
            .cycle_step()
            .map_or(1.0, |c| c.discharge_c_rate);
        let crossed = |r: &CycleRecord| r.discharge_capacity_ah < threshold;
        // An early cycle may already be below the line.
        let life_of = |r: &CycleRecord| f64::from(r.cycle) - first as f64 + 1.0;
        if let Some(r) = early_records.iter().find(|r| crossed(r)) {
            let life = life_of(r);
            ctx.store
                .record_observed_life(&self.run.id, life, false)
                .await?;
            return Ok(StepOutcome(
                json!({"cycles_run": 0, "cycle_life": life, "censored": false}),
            ));
        }
        let cycled = self
            .cycle(
                self.run.protocol.clone(),
                discharge,
                remaining,
                Some(&crossed),
            )
            .await?;
        let records = &cycled.records;
        let (life, censored) = match records.iter().find(|r| crossed(r)) {
            Some(r) => (life_of(r), false),
            // A fault before end of life says nothing about the life: no observation.
            None if let Some(fault) = &cycled.fault => {
                return Err(StepFailure::Failed(format!(
                    "the test ended after {} of {remaining} cycles before end of life: the instrument reported a fault: {fault}",
                    records.len()
                )));
            }
            // Still above the line when the test ended: alive at its last cycle (a lower bound).
            None => (early as f64 + records.len() as f64, true),
        };
        ctx.store
            .record_observed_life(&self.run.id, life, censored)
            .await?;
        Ok(StepOutcome(json!({
            "cycles_run": records.len(),
            "cycle_life": life,
            "censored": censored,
        })))
    }

    async fn approve(&self, message: &str) -> Result<StepOutcome, StepFailure> {
        let ctx = &self.run.ctx;
        let text = interpolate(message, |expr| {
            let parts: Vec<&str> = expr.split('.').collect();
            match parts.as_slice() {
                ["steps", id, "outputs", name] => self.outputs.get(*id)?.get(*name).map(show),
                _ => None,
            }
        });
        ctx.store
            .step_event(
                &self.run.id,
                self.step_id,
                self.attempt,
                labloop_core::StepState::Waiting,
                Some(&text),
            )
            .await?;
        tracing::info!(experiment = %self.run.id, step = self.step_id, message = %text, "waiting for approval");
        ctx.emit(EngineEvent::ApprovalWaiting {
            experiment: self.run.id.clone(),
            step: self.step_id.to_owned(),
            message: text,
        });
        loop {
            match ctx.store.approval(&self.run.id, self.step_id).await? {
                Some(a) if a.approved => {
                    return Ok(StepOutcome(json!({"approved_by": a.by, "note": a.note})));
                }
                Some(a) => {
                    return Err(StepFailure::Failed(format!(
                        "rejected by {}{}",
                        a.by,
                        a.note.map(|n| format!(": {n}")).unwrap_or_default()
                    )));
                }
                None => {}
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The experiment a test key names, for keys as [`StepCall::key`] writes them.
pub(crate) fn experiment_of(key: &str) -> Option<&str> {
    key.rsplitn(3, '/').nth(2)
}

/// What a cycling test gave: its records, and the instrument's fault if it stopped the test on one.
pub(crate) struct Cycled {
    records: Vec<CycleRecord>,
    fault: Option<String>,
}

impl Cycled {
    /// Whether all `cycles` ran; if not, the step fails saying how far it got and the instrument's
    /// own reason.
    fn complete(&self, cycles: u32) -> Result<(), StepFailure> {
        if self.records.len() as u32 >= cycles {
            return Ok(());
        }
        Err(StepFailure::Failed(format!(
            "the test ended after {} of {cycles} cycles: {}",
            self.records.len(),
            match &self.fault {
                Some(fault) => format!("the instrument reported a fault: {fault}"),
                None => "the instrument ended it without a fault".to_owned(),
            }
        )))
    }
}

/// An output as people read it in a message: text as is, numbers to four decimals at most.
fn show(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) if n.is_f64() => {
            let text = format!("{:.4}", n.as_f64().unwrap_or_default());
            text.trim_end_matches('0').trim_end_matches('.').to_owned()
        }
        other => other.to_string(),
    }
}

/// A prediction as the store keeps it: an extrapolation is recorded as one, with the features that
/// make it so (for first predictions and re-made ones alike).
pub(crate) fn prediction_row(
    predictor: &(dyn Predictor + Send + Sync),
    features: &FeatureSet,
    prediction: &Prediction,
    features_json: String,
) -> PredictionRow {
    PredictionRow {
        model: predictor.name().to_owned(),
        cycle_life: prediction.cycle_life,
        sigma: prediction.sigma,
        log10_life: prediction.log10_life,
        sigma_log10: prediction.sigma_log10,
        features_json,
        out_of_domain: labloop_predict::out_of_domain_reason(predictor, features, prediction),
    }
}
