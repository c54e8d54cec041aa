//! Experiments, their state events, cycle records and predictions.

use crate::codec::{decode_curve, encode_curve};
use crate::{Store, StoreError, db, now};
use labloop_core::{CycleRecord, ExperimentState, Telemetry};
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

fn get<'r, T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>>(
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
fn measured(value: f64) -> Option<f64> {
    (!value.is_nan()).then_some(value)
}

/// The same read back.
fn unmeasured_as_nan(value: Option<f64>) -> f64 {
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

    /// Stores cycle records of an experiment in one transaction; a cycle already stored is skipped.
    /// Returns how many were new.
    pub async fn append_records(
        &self,
        experiment: &str,
        records: &[Telemetry],
    ) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        let mut inserted = 0;
        for Telemetry { seq, record: r } in records {
            let curve = r.discharge_curve.as_ref().map(encode_curve);
            // Absent readings are written as a literal NULL, not a bound one: sqlx's Any driver
            // declares a NULL f64 as float4 to PostgreSQL, which then refuses a real f64 in the
            // same cached statement. Each pattern of present readings is its own statement.
            let extremes = [r.voltage_max_v, r.voltage_min_v, r.current_max_a];
            let mut next_param = 12;
            let placeholders: Vec<String> = extremes
                .iter()
                .map(|v| match v {
                    Some(_) => {
                        next_param += 1;
                        format!("${}", next_param - 1)
                    }
                    None => "NULL".to_owned(),
                })
                .collect();
            let sql = format!(
                "INSERT INTO cycle_records (experiment_id, cycle, seq, charge_capacity_ah, discharge_capacity_ah, \
                 internal_resistance_ohm, temperature_min_c, temperature_avg_c, temperature_max_c, charge_time_s, discharge_curve, \
                 voltage_max_v, voltage_min_v, current_max_a) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, {}) ON CONFLICT (experiment_id, cycle) DO NOTHING",
                placeholders.join(", ")
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(experiment)
                .bind(i64::from(r.cycle))
                .bind(*seq as i64)
                .bind(r.charge_capacity_ah)
                .bind(r.discharge_capacity_ah)
                .bind(measured(r.internal_resistance_ohm))
                .bind(measured(r.temperature_min_c))
                .bind(measured(r.temperature_avg_c))
                .bind(measured(r.temperature_max_c))
                .bind(r.charge_time_s)
                .bind(curve);
            for value in extremes.into_iter().flatten() {
                query = query.bind(value);
            }
            let result = query
                .execute(&mut *tx)
                .await
                .map_err(db(format!("storing cycle {} of {experiment}", r.cycle)))?;
            inserted += result.rows_affected();
        }
        tx.commit()
            .await
            .map_err(db(format!("committing records of {experiment}")))?;
        Ok(inserted)
    }

    /// Every stored record of an experiment, by cycle.
    pub async fn records(&self, experiment: &str) -> Result<Vec<CycleRecord>, StoreError> {
        self.records_in(experiment, 0, u32::MAX).await
    }

    /// The stored records of an experiment's cycles `first..=last`, by cycle (one ranged query).
    pub async fn records_in(
        &self,
        experiment: &str,
        first: u32,
        last: u32,
    ) -> Result<Vec<CycleRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT cycle, charge_capacity_ah, discharge_capacity_ah, internal_resistance_ohm, temperature_min_c, \
             temperature_avg_c, temperature_max_c, charge_time_s, discharge_curve, voltage_max_v, voltage_min_v, \
             current_max_a FROM cycle_records \
             WHERE experiment_id = $1 AND cycle >= $2 AND cycle <= $3 ORDER BY cycle",
        )
        .bind(experiment)
        .bind(i64::from(first))
        .bind(i64::from(last))
        .fetch_all(self.pool())
        .await
        .map_err(db(format!("reading records of {experiment}")))?;
        rows.iter()
            .map(|r| {
                let t = "cycle_records";
                let curve: Option<Vec<u8>> = get(r, 8, t)?;
                Ok(CycleRecord {
                    cycle: get::<i64>(r, 0, t)? as u32,
                    charge_capacity_ah: get(r, 1, t)?,
                    discharge_capacity_ah: get(r, 2, t)?,
                    internal_resistance_ohm: unmeasured_as_nan(get(r, 3, t)?),
                    temperature_min_c: unmeasured_as_nan(get(r, 4, t)?),
                    temperature_avg_c: unmeasured_as_nan(get(r, 5, t)?),
                    temperature_max_c: unmeasured_as_nan(get(r, 6, t)?),
                    charge_time_s: get(r, 7, t)?,
                    voltage_max_v: get(r, 9, t)?,
                    voltage_min_v: get(r, 10, t)?,
                    current_max_a: get(r, 11, t)?,
                    discharge_curve: curve
                        .map(|b| {
                            decode_curve(&b)
                                .map_err(|message| StoreError::Corrupt { table: t, message })
                        })
                        .transpose()?,
                })
            })
            .collect()
    }

    /// Number of cycle records stored for a campaign.
    pub async fn count_records(&self, campaign: &str) -> Result<u64, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) FROM cycle_records r JOIN experiments e ON e.id = r.experiment_id WHERE e.campaign_id = $1",
        )
        .bind(campaign)
        .fetch_one(self.pool())
        .await
        .map_err(db(format!("counting records of {campaign}")))?;
        Ok(get::<i64>(&row, 0, "cycle_records")? as u64)
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

impl Store {
    /// The highest stored cycle of each experiment of a campaign that has records: a cheap
    /// snapshot for watchers to see which cells moved on.
    pub async fn last_cycles(&self, campaign: &str) -> Result<Vec<(String, u32)>, StoreError> {
        let rows = sqlx::query(
            "SELECT r.experiment_id, MAX(r.cycle) FROM cycle_records r JOIN experiments e ON e.id = r.experiment_id \
             WHERE e.campaign_id = $1 GROUP BY r.experiment_id ORDER BY r.experiment_id",
        )
        .bind(campaign)
        .fetch_all(self.pool())
        .await
        .map_err(db(format!("reading the last cycles of {campaign}")))?;
        rows.iter()
            .map(|r| {
                Ok((
                    get(r, 0, "cycle_records")?,
                    get::<i64>(r, 1, "cycle_records")? as u32,
                ))
            })
            .collect()
    }

    /// `(cycle, discharge capacity in Ah)` of an experiment's records after `after_cycle`, in cycle
    /// order: the fade curve, or what was added to it since a watcher last looked.
    pub async fn capacity_points(
        &self,
        experiment: &str,
        after_cycle: u32,
    ) -> Result<Vec<(u32, f64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT cycle, discharge_capacity_ah FROM cycle_records WHERE experiment_id = $1 AND cycle > $2 ORDER BY cycle",
        )
        .bind(experiment)
        .bind(i64::from(after_cycle))
        .fetch_all(self.pool())
        .await
        .map_err(db(format!("reading the capacity of {experiment}")))?;
        rows.iter()
            .map(|r| {
                Ok((
                    get::<i64>(r, 0, "cycle_records")? as u32,
                    get(r, 1, "cycle_records")?,
                ))
            })
            .collect()
    }

    /// The highest cycle stored for an experiment (0 when none).
    pub async fn last_cycle(&self, experiment: &str) -> Result<u32, StoreError> {
        let row = sqlx::query(
            "SELECT COALESCE(MAX(cycle), 0) FROM cycle_records WHERE experiment_id = $1",
        )
        .bind(experiment)
        .fetch_one(self.pool())
        .await
        .map_err(db(format!("reading the last cycle of {experiment}")))?;
        Ok(get::<i64>(&row, 0, "cycle_records")? as u32)
    }
}
