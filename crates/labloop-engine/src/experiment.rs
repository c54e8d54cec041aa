//! One experiment: its steps in dependency order, each attempt recorded in the store before it acts,
//! with timeouts, retries with backoff and the step's `on_failure` policy. A restarted engine reads the
//! step events back and goes on from where they stop: finished steps are not run again, and a step
//! that was in flight is re-issued with the same idempotency key, so the instrument continues the test
//! it already runs instead of starting a second one.

use crate::EngineError;
use crate::channels::Channel;
use crate::events::EngineEvent;
use crate::subject::{ExperimentRun, Outputs};
use crate::subject::{StepFailure, StepOutcome};
use labloop_core::{ExperimentState, StepState};
use labloop_store::StoreError;
use labloop_workflow::{OnFailure, StepAction, StepSpec, parse_duration};
use std::sync::Arc;
use std::time::Duration;

/// How an experiment's run ended in this process.
pub(crate) enum RunEnd {
    /// Every step ran (or the experiment failed and that is recorded).
    Finished,
    /// The campaign is pausing; the experiment's steps go on after `labloop resume`.
    Paused,
}

impl ExperimentRun {
    fn signal_observed(&mut self) {
        if let Some(tx) = self.observed.take() {
            let _ = tx.send(());
        }
    }

    /// Runs the remaining steps. Errors only when the store fails; the channel goes back either way.
    pub async fn run(mut self) -> Result<RunEnd, EngineError> {
        let mut channel: Option<Channel> = None;
        let result = self.run_steps(&mut channel).await;
        if let Some(ch) = channel.take() {
            self.ctx.channels.give_back(ch);
        }
        self.release_hint();
        self.signal_observed();
        result
    }

    /// Gives up the claim on the channel held before a restart (see `ChannelPool::reserve`).
    fn release_hint(&mut self) {
        if let Some(id) = self.channel_hint.take() {
            self.ctx.channels.unreserve(&id.as_str().into());
        }
    }

    async fn run_steps(&mut self, channel: &mut Option<Channel>) -> Result<RunEnd, EngineError> {
        let ctx = Arc::clone(&self.ctx);
        let store = &ctx.store;
        let state = store.experiment_state(&self.id).await?;
        if state.is_none_or(ExperimentState::is_terminal) {
            self.signal_observed();
            return Ok(RunEnd::Finished);
        }
        if state == Some(ExperimentState::Predicted) {
            self.signal_observed();
        }
        let statuses = store.step_states(&self.id).await?;
        let mut outputs = Outputs::new();
        for (step, status) in &statuses {
            if status.state.is_done() {
                let value = status
                    .detail
                    .as_deref()
                    .and_then(|d| serde_json::from_str(d).ok())
                    .unwrap_or(serde_json::Value::Null);
                outputs.insert(step.clone(), value);
            }
        }
        // Its channel steps all ran before the restart: the channel it held is someone else's now.
        let needs_a_channel = ctx.order.iter().any(|&i| {
            !outputs.contains_key(&ctx.step_ids[i])
                && ctx.workflow.experiment.steps[i].action().uses_channel()
        });
        if !needs_a_channel {
            self.release_hint();
        }
        let last_channel_step = ctx
            .order
            .iter()
            .rev()
            .find(|&&i| ctx.workflow.experiment.steps[i].action().uses_channel())
            .copied();
        let mut end = RunEnd::Finished;
        for &i in &ctx.order {
            let step_id = ctx.step_ids[i].clone();
            if outputs.contains_key(&step_id) {
                continue;
            }
            if ctx.is_cancelled(&self.id) {
                self.cancel(channel).await?;
                break;
            }
            let spec = &ctx.workflow.experiment.steps[i];
            if spec.action().uses_channel() && channel.is_none() {
                let taken = match self.channel_hint.take() {
                    Some(id) => ctx.channels.take_specific(&id.as_str().into()).await,
                    None => ctx.channels.take().await,
                };
                let id = taken.id.clone();
                // Held from here on: given back on every way out, errors included.
                *channel = Some(taken);
                if store.experiment_state(&self.id).await? == Some(ExperimentState::Queued) {
                    store
                        .transition(&self.id, ExperimentState::Claimed, Some(id.as_str()))
                        .await?;
                }
                store.assign_channel(&self.id, id.as_str()).await?;
            }
            let resumed = statuses
                .get(&step_id)
                .filter(|s| !s.state.is_done())
                .cloned();
            match self
                .run_step(spec, &step_id, resumed, channel.as_ref(), &mut outputs)
                .await?
            {
                StepEnd::Done => {
                    let yields_objective = ctx
                        .workflow
                        .campaign
                        .objective
                        .measured()
                        .is_some_and(|(from, _)| from == step_id);
                    if spec.predict.is_some() || yields_objective {
                        self.signal_observed();
                    }
                }
                StepEnd::Paused => {
                    end = RunEnd::Paused;
                    break;
                }
                StepEnd::Cancelled => {
                    self.cancel(channel).await?;
                    break;
                }
                StepEnd::Aborted(reason) => {
                    if let Some(ch) = &channel {
                        self.stop_own_test(ch).await;
                    }
                    store
                        .transition(&self.id, ExperimentState::Failed, Some(&reason))
                        .await?;
                    tracing::warn!(experiment = %self.id, %reason, "experiment failed");
                    ctx.emit(EngineEvent::ExperimentFailed {
                        experiment: self.id.clone(),
                        reason,
                    });
                    break;
                }
            }
            if Some(i) == last_channel_step
                && let Some(ch) = channel.take()
            {
                self.stop_own_test(&ch).await;
                ctx.channels.give_back(ch);
            }
        }
        if matches!(end, RunEnd::Finished) {
            let current = store.experiment_state(&self.id).await?;
            if current.is_some_and(|s| !s.is_terminal()) {
                store
                    .transition(&self.id, ExperimentState::Completed, None)
                    .await?;
            }
        }
        Ok(end)
    }

    /// Ends an experiment a person aborted: its test stops, it is marked `aborted` (which frees its
    /// channel for the next cell), and the round stops waiting for it.
    async fn cancel(&mut self, channel: &Option<Channel>) -> Result<(), EngineError> {
        let ctx = &self.ctx;
        if let Some(ch) = channel {
            self.stop_own_test(ch).await;
        }
        ctx.store
            .transition(
                &self.id,
                ExperimentState::Aborted,
                Some("aborted by a person"),
            )
            .await?;
        tracing::warn!(experiment = %self.id, "experiment aborted by a person");
        ctx.emit(EngineEvent::ExperimentFailed {
            experiment: self.id.clone(),
            reason: "aborted by a person".to_owned(),
        });
        self.signal_observed();
        Ok(())
    }

    /// Stops the channel's test when it is this experiment's and still running. A test the
    /// instrument names as someone else's is left alone (a channel found busy with it is never
    /// stopped behind its owner's back); one it cannot name is stopped, as stopping is harmless
    /// on an idle channel.
    async fn stop_own_test(&self, ch: &Channel) {
        match ch.cycler.loaded_test(&ch.id).await {
            Ok(Some(t)) if crate::steps::experiment_of(&t.key) != Some(self.id.as_str()) => {
                tracing::info!(experiment = %self.id, channel = %ch.id, test = %t.key, "not stopping a test this experiment did not start");
                return;
            }
            Ok(Some(t)) if t.ended => return,
            _ => {}
        }
        if let Err(e) = ch.cycler.stop(&ch.id).await {
            tracing::warn!(experiment = %self.id, channel = %ch.id, error = %e, "stopping the channel's test failed");
        }
    }

    /// Runs one step to success, skip, abort or pause, by its policy.
    async fn run_step(
        &self,
        spec: &StepSpec,
        step_id: &str,
        resumed: Option<labloop_store::StepStatus>,
        channel: Option<&Channel>,
        outputs: &mut Outputs,
    ) -> Result<StepEnd, EngineError> {
        let ctx = &self.ctx;
        let store = &ctx.store;
        let backoff = parse_duration(&spec.backoff).unwrap_or(10.0);
        let timeout = spec.timeout.as_deref().and_then(|t| parse_duration(t).ok());
        // An attempt in flight at the crash goes on under its own key; after a failure, the next.
        let (mut attempt, mut in_flight) = match &resumed {
            Some(s) if s.state == StepState::Failed => (s.attempt + 1, false),
            Some(s) => (s.attempt, true),
            None => (1, false),
        };
        loop {
            if !in_flight {
                store
                    .step_event(&self.id, step_id, attempt, StepState::Started, None)
                    .await?;
            }
            let action = crate::subject::StepCall {
                run: self,
                step_id,
                attempt,
                resumed_in_flight: in_flight,
                channel,
                outputs,
            };
            in_flight = false;
            let limited = async {
                // Waiting for a shared robot is not part of the attempt: its clock starts once the
                // step holds its resources.
                let _held = ctx.hold(&spec.resources).await;
                let work = action.execute(spec);
                // People answer in real time; instruments in (possibly simulated) instrument time.
                let limit = |t: f64| match spec.action() {
                    StepAction::Approve(_) => Duration::from_secs_f64(t.min(1e9)),
                    _ => ctx.timeout(t),
                };
                match timeout {
                    Some(t) => tokio::time::timeout(limit(t), work)
                        .await
                        .unwrap_or_else(|_| {
                            // Say why, when the instrument's driver knows.
                            let cause = channel
                                .and_then(|ch| ch.cycler.health())
                                .map(|h| format!(": {h}"))
                                .unwrap_or_default();
                            Err(StepFailure::Failed(format!(
                                "timed out after {}{cause}",
                                spec.timeout.as_deref().unwrap_or("")
                            )))
                        }),
                    None => work.await,
                }
            };
            // `None`: a person aborted the experiment.
            let result = tokio::select! {
                r = limited => Some(r),
                () = ctx.halt.halted() => Some(Err(StepFailure::Paused)),
                () = ctx.cancelled(&self.id) => None,
            };
            let Some(result) = result else {
                store
                    .step_event(
                        &self.id,
                        step_id,
                        attempt,
                        StepState::Failed,
                        Some("aborted by a person"),
                    )
                    .await?;
                return Ok(StepEnd::Cancelled);
            };
            match result {
                Ok(StepOutcome(value)) => {
                    store
                        .step_event(
                            &self.id,
                            step_id,
                            attempt,
                            StepState::Succeeded,
                            Some(&value.to_string()),
                        )
                        .await?;
                    outputs.insert(step_id.to_owned(), value);
                    return Ok(StepEnd::Done);
                }
                Err(StepFailure::Paused) => return Ok(StepEnd::Paused),
                Err(StepFailure::Store(e)) => return Err(e.into()),
                Err(failure @ (StepFailure::Failed(_) | StepFailure::Unsafe(_))) => {
                    let (reason, unsafe_cell) = match failure {
                        StepFailure::Unsafe(reason) => (reason, true),
                        StepFailure::Failed(reason) => (reason, false),
                        _ => unreachable!("matched above"),
                    };
                    let reason = format!("step `{step_id}` attempt {attempt}: {reason}");
                    store
                        .step_event(&self.id, step_id, attempt, StepState::Failed, Some(&reason))
                        .await?;
                    tracing::info!(experiment = %self.id, step = step_id, attempt, %reason, "step failed");
                    if let Some(ch) = channel {
                        self.stop_own_test(ch).await;
                    }
                    let retry = !unsafe_cell
                        && (attempt <= spec.retries || spec.on_failure == OnFailure::Retry);
                    if retry {
                        let wait = (backoff * 2f64.powi(attempt.min(30) as i32 - 1)).min(3600.0);
                        tokio::select! {
                            _ = tokio::time::sleep(ctx.wall(wait)) => {}
                            () = ctx.halt.halted() => return Ok(StepEnd::Paused),
                        }
                        attempt += 1;
                        continue;
                    }
                    return Ok(match spec.on_failure {
                        // A cell that tripped an interlock goes no further, whatever the policy.
                        OnFailure::Skip | OnFailure::Retry if unsafe_cell => {
                            StepEnd::Aborted(reason)
                        }
                        OnFailure::Skip => {
                            store
                                .step_event(
                                    &self.id,
                                    step_id,
                                    attempt,
                                    StepState::Skipped,
                                    Some("null"),
                                )
                                .await?;
                            outputs.insert(step_id.to_owned(), serde_json::Value::Null);
                            StepEnd::Done
                        }
                        OnFailure::PauseCampaign => {
                            ctx.halt.pause(&reason, false);
                            StepEnd::Paused
                        }
                        OnFailure::AbortExperiment | OnFailure::Retry => StepEnd::Aborted(reason),
                    });
                }
            }
        }
    }
}

/// How one step ended.
enum StepEnd {
    Done,
    Paused,
    Aborted(String),
    /// A person aborted the experiment (the API).
    Cancelled,
}

impl From<StoreError> for StepFailure {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}
