//! Experiments, their state events, predictions and measurements (their cycle records are in
//! `records.rs`).

use crate::{Store, StoreError, db, now};
use labloop_core::ExperimentState;
use sqlx::Row;
use sqlx::any::AnyRow;

/// An experiment to record.
#[derive(Clone, Debug, PartialEq)]
pub struct NewExperiment {
    /// Its id (`<campaign>/r<round>/<slot>`).
    pub id: String,
    /// Its campaign.
    pub campaign_id: String,
    /// The round that suggested it.
    pub round: u32,
    /// Its place in the round.
    pub slot: u32,
    /// Index of its candidate in the campaign's space.
    pub candidate_index: usize,
    /// The optimizer's inputs for it (JSON array).
    pub parameters_json: String,
    /// The full protocol (JSON).
    pub protocol_json: String,
    /// The protocol as people name it, e.g. `4.8-5.2-5.2-4.16`.
    pub protocol_label: String,
    /// The cell it runs on.
    pub cell_id: String,
}

/// An experiment as stored, with its current state.
#[derive(Clone, Debug, PartialEq)]
pub struct ExperimentRow {
    /// Its id.
    pub id: String,
    /// The round.
    pub round: u32,
    /// Candidate index.
    pub candidate_index: usize,
    /// The protocol's label.
    pub protocol_label: String,
    /// The cell.
    pub cell_id: String,
    /// The channel it ran on, once assigned.
    pub channel_id: Option<String>,
    /// Its current state (the last event's).
    pub state: ExperimentState,
}

/// A prediction to record or as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct PredictionRow {
    /// The model's name (provenance).
    pub model: String,
    /// Predicted cycle life.
    pub cycle_life: f64,
    /// Its σ in cycles.
    pub sigma: f64,
    /// Predicted log₁₀ life.
    pub log10_life: f64,
    /// σ in log₁₀ cycles.
    pub sigma_log10: f64,
    /// The features it was made from (JSON object).
    pub features_json: String,
    /// Why the cell lies outside the model's training domain (features, how far out), when it
    /// does: the prediction is an extrapolation, its σ widened for it.
    pub out_of_domain: Option<String>,
}

/// A predicted experiment, as the optimizer sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct ObservationRow {
    /// The experiment.
    pub experiment_id: String,
    /// Its round.
    pub round: u32,
    /// Its candidate.
    pub candidate_index: usize,
    /// The protocol's label.
    pub protocol_label: String,
    /// The prediction.
    pub prediction: PredictionRow,
    /// The life observed by cycling to end of life, and whether it was censored (cycling stopped
    /// before the end), when the experiment went that far.
    pub observed: Option<(f64, bool)>,
    /// For a measured objective ([`Store::measured_observations`]): the measurement (value, σ;
    /// σ 0 when the step gave none). `prediction` then carries the same value as the
    /// experiment's objective, with the measurement's source as its model.
    pub measurement: Option<(f64, f64)>,
}

/// One measured value of an experiment (a step's output named as the campaign's objective).
#[derive(Clone, Debug, PartialEq)]
pub struct MeasurementRow {
    /// The objective's name.
    pub name: String,
    /// The value.
    pub value: f64,
    /// Its σ, when the step gave one.
    pub sigma: Option<f64>,
    /// Its unit, for people.
    pub unit: Option<String>,
    /// Where it came from, e.g. `steps.conductivity.outputs.sigma_ms_cm (plugin lab-tools)`.
    pub source: String,
}

fn parse_state(name: &str, table: &'static str) -> Result<ExperimentState, StoreError> {
    ExperimentState::parse(name).ok_or_else(|| StoreError::Corrupt {
        table,
        message: format!("unknown state `{name}`"),
    })
}

pub(crate) fn get<'r, T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>>(
    row: &'r AnyRow,
    i: usize,
    table: &'static str,
) -> Result<T, StoreError> {
    row.try_get(i).map_err(|e| StoreError::Corrupt {
        table,
        message: e.to_string(),
    })
}

/// A quantity a record may lack (`NaN`: the cycler did not measure it) as the store keeps it:
/// `NULL` on both backends (SQLite has no NaN).
pub(crate) fn measured(value: f64) -> Option<f64> {
    (!value.is_nan()).then_some(value)
}

/// The same read back.
pub(crate) fn unmeasured_as_nan(value: Option<f64>) -> f64 {
    value.unwrap_or(f64::NAN)
}

/// Inserts an experiment's row (no state event); a row already there is kept.
pub(crate) async fn insert_experiment(
    conn: &mut sqlx::AnyConnection,
    e: &NewExperiment,
    at: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO experiments (id, campaign_id, round, slot, candidate_index, parameters, protocol, protocol_label, cell_id, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (id) DO NOTHING",
    )
    .bind(&e.id)
    .bind(&e.campaign_id)
    .bind(i64::from(e.round))
    .bind(i64::from(e.slot))
    .bind(e.candidate_index as i64)
    .bind(&e.parameters_json)
    .bind(&e.protocol_json)
    .bind(&e.protocol_label)
    .bind(&e.cell_id)
    .bind(at)
    .execute(conn)
    .await
    .map_err(db(format!("recording experiment {}", e.id)))?;
    Ok(())
}

impl Store {
    /// Records an experiment in state `proposed`. Idempotent by id.
    pub async fn add_experiment(&self, e: &NewExperiment) -> Result<(), StoreError> {
        let mut conn = self
            .pool()
            .acquire()
            .await
            .map_err(db(format!("recording experiment {}", e.id)))?;
        insert_experiment(&mut conn, e, &now()).await?;
        drop(conn);
        self.transition(&e.id, ExperimentState::Proposed, None)
            .await
            .map(|_| ())
    }

    /// Records the channel an experiment runs on.
    pub async fn assign_channel(&self, experiment: &str, channel: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE experiments SET channel_id = $1 WHERE id = $2")
            .bind(channel)
            .bind(experiment)
            .execute(self.pool())
            .await
            .map_err(db(format!("assigning {experiment} to {channel}")))?;
        Ok(())
    }

    /// The experiment's current state, if it has any event.
    pub async fn experiment_state(
        &self,
        experiment: &str,
    ) -> Result<Option<ExperimentState>, StoreError> {
        let row = sqlx::query("SELECT state FROM experiment_events WHERE experiment_id = $1 ORDER BY version DESC LIMIT 1")
            .bind(experiment)
            .fetch_optional(self.pool())
            .await
            .map_err(db(format!("reading the state of {experiment}")))?;
        row.map(|r| {
            let name: String = get(&r, 0, "experiment_events")?;
            parse_state(&name, "experiment_events")
        })
        .transpose()
    }

    /// Appends a state event, checked against the state machine; a transition to the current state
    /// writes nothing. Returns the new state.
    pub async fn transition(
        &self,
        experiment: &str,
        to: ExperimentState,
        detail: Option<&str>,
    ) -> Result<ExperimentState, StoreError> {
        loop {
            let mut tx = self.begin_write().await?;
            let row = sqlx::query("SELECT version, state FROM experiment_events WHERE experiment_id = $1 ORDER BY version DESC LIMIT 1")
                .bind(experiment)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db(format!("reading the state of {experiment}")))?;
            let (version, current) = match row {
                Some(r) => {
                    let name: String = get(&r, 1, "experiment_events")?;
                    let state = parse_state(&name, "experiment_events")?;
                    (get::<i64>(&r, 0, "experiment_events")?, Some(state))
                }
                None => (0, None),
            };
            if let Some(current) = current {
                current
                    .transition(to)
                    .map_err(|source| StoreError::Transition {
                        experiment: experiment.to_owned(),
                        source,
                    })?;
                if current == to {
                    return Ok(to);
                }
            }
            let inserted = sqlx::query(
                "INSERT INTO experiment_events (experiment_id, version, state, detail, at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (experiment_id, version) DO NOTHING",
            )
            .bind(experiment)
            .bind(version + 1)
            .bind(to.as_str())
            .bind(detail)
            .bind(now())
            .execute(&mut *tx)
            .await
            .map_err(db(format!("recording {experiment} → {to}")))?;
            tx.commit().await.map_err(db("committing a transition"))?;
            if inserted.rows_affected() == 1 {
                return Ok(to);
            }
            // Another writer took this version: read again and re-check.
        }
    }

    /// Records an experiment's prediction. Idempotent: the first prediction stands.
    pub async fn record_prediction(
        &self,
        experiment: &str,
        p: &PredictionRow,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO predictions (experiment_id, model, cycle_life, sigma, log10_life, sigma_log10, features, created_at, out_of_domain) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (experiment_id) DO NOTHING",
        )
        .bind(experiment)
        .bind(&p.model)
        .bind(p.cycle_life)
        .bind(p.sigma)
        .bind(p.log10_life)
        .bind(p.sigma_log10)
        .bind(&p.features_json)
        .bind(now())
        .bind(&p.out_of_domain)
        .execute(self.pool())
        .await
        .map_err(db(format!("recording the prediction of {experiment}")))?;
        Ok(())
    }

    /// Records a prediction re-made by the campaign's model adapted on the cells whose SHA-256 is
    /// `adaptation` (described by `adapted_on`). Idempotent per experiment and adaptation.
    pub async fn record_reprediction(
        &self,
        experiment: &str,
        adaptation: &str,
        adapted_on: &str,
        p: &PredictionRow,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO repredictions (experiment_id, adaptation, adapted_on, model, cycle_life, sigma, log10_life, sigma_log10, out_of_domain, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (experiment_id, adaptation) DO NOTHING",
        )
        .bind(experiment)
        .bind(adaptation)
        .bind(adapted_on)
        .bind(&p.model)
        .bind(p.cycle_life)
        .bind(p.sigma)
        .bind(p.log10_life)
        .bind(p.sigma_log10)
        .bind(&p.out_of_domain)
        .bind(now())
        .execute(self.pool())
        .await
        .map_err(db(format!("recording the re-made prediction of {experiment}")))?;
        Ok(())
    }

    /// An experiment's re-made predictions, oldest first: (adapted on, life, σ).
    pub async fn repredictions(
        &self,
        experiment: &str,
    ) -> Result<Vec<(String, f64, f64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT adapted_on, cycle_life, sigma FROM repredictions WHERE experiment_id = $1 ORDER BY created_at, adaptation",
        )
        .bind(experiment)
        .fetch_all(self.pool())
        .await
        .map_err(db(format!("reading re-made predictions of {experiment}")))?;
        rows.iter()
            .map(|r| {
                let t = "repredictions";
                Ok((get(r, 0, t)?, get(r, 1, t)?, get(r, 2, t)?))
            })
            .collect()
    }

    /// Every experiment of a campaign with its current state, by id.
    pub async fn experiments(&self, campaign: &str) -> Result<Vec<ExperimentRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT e.id, e.round, e.candidate_index, e.protocol_label, e.cell_id, e.channel_id, \
             (SELECT s.state FROM experiment_events s WHERE s.experiment_id = e.id ORDER BY s.version DESC LIMIT 1) \
             FROM experiments e WHERE e.campaign_id = $1 ORDER BY e.id",
        )
        .bind(campaign)
        .fetch_all(self.pool())
        .await
        .map_err(db(format!("listing experiments of {campaign}")))?;
        rows.iter()
            .map(|r| {
                let t = "experiments";
                let state: String = get(r, 6, t)?;
                Ok(ExperimentRow {
                    id: get(r, 0, t)?,
                    round: get::<i64>(r, 1, t)? as u32,
                    candidate_index: get::<i64>(r, 2, t)? as usize,
                    protocol_label: get(r, 3, t)?,
                    cell_id: get(r, 4, t)?,
                    channel_id: get(r, 5, t)?,
                    state: parse_state(&state, t)?,
                })
            })
            .collect()
    }

    /// Every predicted experiment of a campaign, by experiment id: what the optimizer learns from.
    pub async fn observations(&self, campaign: &str) -> Result<Vec<ObservationRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT e.id, e.round, e.candidate_index, e.protocol_label, p.model, p.cycle_life, p.sigma, p.log10_life, \
             p.sigma_log10, p.features, o.cycle_life, o.censored, p.out_of_domain FROM experiments e JOIN predictions p ON p.experiment_id = e.id \
             LEFT JOIN observed_lives o ON o.experiment_id = e.id WHERE e.campaign_id = $1 ORDER BY e.id",
        )
        .bind(campaign)
        .fetch_all(self.pool())
        .await
        .map_err(db(format!("reading observations of {campaign}")))?;
        rows.iter()
            .map(|r| {
                let t = "predictions";
                Ok(ObservationRow {
                    experiment_id: get(r, 0, t)?,
                    round: get::<i64>(r, 1, t)? as u32,
                    candidate_index: get::<i64>(r, 2, t)? as usize,
                    protocol_label: get(r, 3, t)?,
                    prediction: PredictionRow {
                        model: get(r, 4, t)?,
                        cycle_life: get(r, 5, t)?,
                        sigma: get(r, 6, t)?,
                        log10_life: get(r, 7, t)?,
                        sigma_log10: get(r, 8, t)?,
                        features_json: get(r, 9, t)?,
                        out_of_domain: get(r, 12, t)?,
                    },
                    observed: match get::<Option<f64>>(r, 10, t)? {
                        Some(life) => Some((life, get::<Option<i64>>(r, 11, t)?.unwrap_or(0) != 0)),
                        None => None,
                    },
                    measurement: None,
                })
            })
            .collect()
    }

    /// Records an experiment's measured objective. Idempotent: the first value stays.
    pub async fn record_measurement(
        &self,
        experiment: &str,
        m: &MeasurementRow,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO measurements (experiment_id, name, value, sigma, unit, source, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (experiment_id, name) DO NOTHING",
        )
        .bind(experiment)
        .bind(&m.name)
        .bind(m.value)
        .bind(m.sigma)
        .bind(&m.unit)
        .bind(&m.source)
        .bind(now())
        .execute(self.pool())
        .await
        .map_err(db(format!("recording measurement {} of {experiment}", m.name)))?;
        Ok(())
    }

    /// Every experiment of a campaign with a measurement `name`, by experiment id: what the
    /// optimizer learns from when the campaign's objective is that measurement.
    pub async fn measured_observations(
        &self,
        campaign: &str,
        name: &str,
    ) -> Result<Vec<ObservationRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT e.id, e.round, e.candidate_index, e.protocol_label, m.value, m.sigma, m.source \
             FROM experiments e JOIN measurements m ON m.experiment_id = e.id \
             WHERE e.campaign_id = $1 AND m.name = $2 ORDER BY e.id",
        )
        .bind(campaign)
        .bind(name)
        .fetch_all(self.pool())
        .await
        .map_err(db(format!("reading measurements {name} of {campaign}")))?;
        rows.iter()
            .map(|r| {
                let t = "measurements";
                let value: f64 = get(r, 4, t)?;
                let sigma = get::<Option<f64>>(r, 5, t)?.unwrap_or(0.0);
                Ok(ObservationRow {
                    experiment_id: get(r, 0, t)?,
                    round: get::<i64>(r, 1, t)? as u32,
                    candidate_index: get::<i64>(r, 2, t)? as usize,
                    protocol_label: get(r, 3, t)?,
                    prediction: PredictionRow {
                        model: get(r, 6, t)?,
                        cycle_life: value,
                        sigma,
                        log10_life: f64::NAN,
                        sigma_log10: f64::NAN,
                        features_json: "{}".into(),
                        out_of_domain: None,
                    },
                    observed: None,
                    measurement: Some((value, sigma)),
                })
            })
            .collect()
    }
}
