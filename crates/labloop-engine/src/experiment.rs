//! One experiment's life: take a channel, cycle the cell, store every record, predict.

use crate::channels::ChannelPool;
use crate::runner::EngineEvent;
use labloop_core::{ChargeProtocol, ExperimentState};
use labloop_drivers::CyclingTest;
use labloop_predict::{EarlyData, Predictor};
use labloop_store::{PredictionRow, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;

/// What one experiment needs.
pub(crate) struct ExperimentRun {
    pub id: String,
    pub cell_id: String,
    pub protocol: ChargeProtocol,
    pub cycles: u32,
    pub discharge_c_rate: f64,
    pub store: Store,
    pub channels: Arc<ChannelPool>,
    pub predictor: Arc<dyn Predictor + Send + Sync>,
    pub events: Option<UnboundedSender<EngineEvent>>,
    pub record_timeout: Duration,
}

impl ExperimentRun {
    fn emit(&self, event: EngineEvent) {
        if let Some(tx) = &self.events {
            let _ = tx.send(event);
        }
    }

    /// Runs to `predicted`, or records `failed` with the reason. Errors only when the store fails.
    pub async fn run(self) -> Result<(), labloop_store::StoreError> {
        let channel = self.channels.take().await;
        let outcome = self.cycle_and_predict(&channel).await;
        // Whatever happened, the channel stops and goes back to the pool.
        let _ = channel.cycler.stop(&channel.id).await;
        self.channels.give_back(channel);
        match outcome {
            Ok(()) => Ok(()),
            Err(Failure::Store(e)) => Err(e),
            Err(Failure::Experiment(reason)) => {
                tracing::warn!(experiment = %self.id, %reason, "experiment failed");
                self.store
                    .transition(&self.id, ExperimentState::Failed, Some(&reason))
                    .await?;
                self.emit(EngineEvent::ExperimentFailed {
                    experiment: self.id.clone(),
                    reason,
                });
                Ok(())
            }
        }
    }

    async fn cycle_and_predict(&self, channel: &crate::channels::Channel) -> Result<(), Failure> {
        let store = &self.store;
        store
            .transition(
                &self.id,
                ExperimentState::Claimed,
                Some(channel.id.as_str()),
            )
            .await?;
        store.assign_channel(&self.id, channel.id.as_str()).await?;
        let test = CyclingTest {
            cell_id: self.cell_id.clone(),
            protocol: self.protocol.clone(),
            discharge_c_rate: self.discharge_c_rate,
            cycles: self.cycles,
        };
        channel
            .cycler
            .start(&channel.id, test)
            .await
            .map_err(|e| Failure::Experiment(e.to_string()))?;
        store
            .transition(&self.id, ExperimentState::Running, None)
            .await?;
        tracing::debug!(experiment = %self.id, channel = %channel.id, "running");

        let mut next_seq = 1;
        loop {
            let batch = tokio::time::timeout(
                self.record_timeout,
                channel.cycler.records(&channel.id, next_seq),
            )
            .await
            .map_err(|_| {
                Failure::Experiment(format!(
                    "{}: no cycle record for {:?}",
                    channel.id, self.record_timeout
                ))
            })?
            .map_err(|e| Failure::Experiment(e.to_string()))?;
            let fresh: Vec<_> = batch
                .records
                .iter()
                .filter(|t| t.seq >= next_seq)
                .map(|t| (t.seq, t.record.clone()))
                .collect();
            if let Some(&(seq, _)) = fresh.last() {
                // Stored before the next request acknowledges it.
                store.append_records(&self.id, &fresh).await?;
                next_seq = seq + 1;
                self.emit(EngineEvent::CycleRecorded {
                    experiment: self.id.clone(),
                    records: fresh.len(),
                });
            }
            if batch.finished && next_seq > batch.records.last().map_or(0, |t| t.seq) {
                break;
            }
        }

        // Predict from what the store holds: the store, not memory, is the truth.
        let records = store.records(&self.id).await?;
        if (records.len() as u32) < self.cycles {
            return Err(Failure::Experiment(format!(
                "the test ended after {} of {} cycles",
                records.len(),
                self.cycles
            )));
        }
        // Features over the model's own early window, whatever the cycling step ran beyond it.
        let features = EarlyData::from_records(&records, self.predictor.window())
            .map_err(|e| Failure::Experiment(e.to_string()))?
            .features();
        let prediction = self
            .predictor
            .predict(std::slice::from_ref(&features))
            .map_err(|e| Failure::Experiment(e.to_string()))?[0];
        let features_json = serde_json::to_string(
            &features
                .iter()
                .collect::<std::collections::BTreeMap<_, _>>(),
        )
        .unwrap_or_else(|_| "{}".into());
        store
            .record_prediction(
                &self.id,
                &PredictionRow {
                    model: self.predictor.name().to_owned(),
                    cycle_life: prediction.cycle_life,
                    sigma: prediction.sigma,
                    log10_life: prediction.log10_life,
                    sigma_log10: prediction.sigma_log10,
                    features_json,
                },
            )
            .await?;
        store
            .transition(&self.id, ExperimentState::Predicted, None)
            .await?;
        self.emit(EngineEvent::ExperimentPredicted {
            experiment: self.id.clone(),
            protocol: self.protocol.to_string(),
            cycle_life: prediction.cycle_life,
            sigma: prediction.sigma,
        });
        Ok(())
    }
}

enum Failure {
    /// The store failed: the campaign cannot go on safely.
    Store(labloop_store::StoreError),
    /// This experiment failed; the campaign goes on.
    Experiment(String),
}

impl From<labloop_store::StoreError> for Failure {
    fn from(e: labloop_store::StoreError) -> Self {
        Self::Store(e)
    }
}
