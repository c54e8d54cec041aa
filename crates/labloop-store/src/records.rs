//! Experiments' cycle records: stored once per cycle, read whole, by cycle range or as a
//! campaign's summary.

use crate::codec::{decode_curve, encode_curve};
use crate::experiments::{get, measured, unmeasured_as_nan};
use crate::{Store, StoreError, db};
use labloop_core::{CycleRecord, Telemetry};

impl Store {
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
