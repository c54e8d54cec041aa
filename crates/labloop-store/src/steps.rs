//! Steps of experiments: their append-only events, people's approvals, observed lives, and rounds
//! written together with their experiments.

use crate::experiments::{NewExperiment, insert_experiment};
use crate::{Store, StoreError, db, now};
use labloop_core::StepState;
use sqlx::Row;
use std::collections::BTreeMap;

/// Where a step stands: the state and detail of its last event.
#[derive(Clone, Debug, PartialEq)]
pub struct StepStatus {
    /// The state of its last event.
    pub state: StepState,
    /// The attempt (from 1).
    pub attempt: u32,
    /// Outputs (JSON) of a success, the reason of a failure, the question of a wait.
    pub detail: Option<String>,
}

/// A stored step state; an unknown one is a corrupt row.
fn step_state(name: &str) -> Result<StepState, StoreError> {
    StepState::parse(name).ok_or_else(|| StoreError::Corrupt {
        table: "step_events",
        message: format!("unknown step state `{name}`"),
    })
}

/// A person's answer to an `approve` step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Approval {
    /// Who answered.
    pub by: String,
    /// Approved (the step succeeds) or rejected (it fails).
    pub approved: bool,
    /// Why, in their words.
    pub note: Option<String>,
}

/// A step waiting for a person.
#[derive(Clone, Debug, PartialEq)]
pub struct PendingApproval {
    /// The experiment.
    pub experiment_id: String,
    /// The step.
    pub step: String,
    /// What the person is asked.
    pub message: String,
}

impl Store {
    /// Appends an event to a step's history.
    pub async fn step_event(
        &self,
        experiment: &str,
        step: &str,
        attempt: u32,
        state: StepState,
        detail: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "SELECT COALESCE(MAX(version), 0) FROM step_events WHERE experiment_id = $1 AND step = $2",
        )
        .bind(experiment)
        .bind(step)
        .fetch_one(&mut *tx)
        .await
        .map_err(db(format!("reading step {step} of {experiment}")))?;
        let version: i64 = row.try_get(0).map_err(db("reading step_events"))?;
        sqlx::query(
            "INSERT INTO step_events (experiment_id, step, version, attempt, state, detail, at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(experiment)
        .bind(step)
        .bind(version + 1)
        .bind(i64::from(attempt))
        .bind(state.as_str())
        .bind(detail)
        .bind(now())
        .execute(&mut *tx)
        .await
        .map_err(db(format!(
            "recording step {step} of {experiment} as {state}"
        )))?;
        tx.commit()
            .await
            .map_err(db(format!("committing step {step} of {experiment}")))
    }

    /// The last event of every step of an experiment that has one (notes aside: they annotate
    /// an attempt without changing where the step stands).
    pub async fn step_states(
        &self,
        experiment: &str,
    ) -> Result<BTreeMap<String, StepStatus>, StoreError> {
        let rows = sqlx::query(
            "SELECT step, attempt, state, detail FROM step_events WHERE experiment_id = $1 ORDER BY step, version",
        )
        .bind(experiment)
        .fetch_all(self.pool())
        .await
        .map_err(db(format!("reading the steps of {experiment}")))?;
        let mut out = BTreeMap::new();
        for r in rows {
            let step: String = r.try_get(0).map_err(db("reading step_events"))?;
            let attempt: i64 = r.try_get(1).map_err(db("reading step_events"))?;
            let state = step_state(
                &r.try_get::<String, _>(2)
                    .map_err(db("reading step_events"))?,
            )?;
            if state == StepState::Note {
                continue;
            }
            out.insert(
                step,
                StepStatus {
                    attempt: attempt as u32,
                    state,
                    detail: r.try_get(3).map_err(db("reading step_events"))?,
                },
            );
        }
        Ok(out)
    }

    /// Every step event of an experiment in the order written: (step, attempt, state, detail).
    pub async fn step_history(
        &self,
        experiment: &str,
    ) -> Result<Vec<(String, u32, StepState, Option<String>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT step, attempt, state, detail FROM step_events WHERE experiment_id = $1 ORDER BY at, step, version",
        )
        .bind(experiment)
        .fetch_all(self.pool())
        .await
        .map_err(db(format!("reading the steps of {experiment}")))?;
        rows.iter()
            .map(|r| {
                let attempt: i64 = r.try_get(1).map_err(db("reading step_events"))?;
                Ok((
                    r.try_get(0).map_err(db("reading step_events"))?,
                    attempt as u32,
                    step_state(
                        &r.try_get::<String, _>(2)
                            .map_err(db("reading step_events"))?,
                    )?,
                    r.try_get(3).map_err(db("reading step_events"))?,
                ))
            })
            .collect()
    }

    /// Records the cell an experiment runs on (a builder's id replaces the planned one).
    pub async fn set_cell(&self, experiment: &str, cell_id: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE experiments SET cell_id = $1 WHERE id = $2")
            .bind(cell_id)
            .bind(experiment)
            .execute(self.pool())
            .await
            .map_err(db(format!("recording the cell of {experiment}")))?;
        Ok(())
    }

    /// Records a person's answer to a waiting step: approved, or rejected (the step then fails).
    /// Idempotent: the first answer stands.
    pub async fn approve(
        &self,
        experiment: &str,
        step: &str,
        answer: &Approval,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO approvals (experiment_id, step, approved_by, note, approved, at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (experiment_id, step) DO NOTHING",
        )
        .bind(experiment)
        .bind(step)
        .bind(&answer.by)
        .bind(answer.note.as_deref())
        .bind(i64::from(answer.approved))
        .bind(now())
        .execute(self.pool())
        .await
        .map_err(db(format!("approving {step} of {experiment}")))?;
        Ok(())
    }

    /// Answers every step of `campaign` waiting for a person, or only those of `experiment` and
    /// named `step` when given; the steps answered (empty when none waits there) and how many
    /// waited in all. What `labloop approve` and the API's `approve` do.
    pub async fn answer_waiting(
        &self,
        campaign: &str,
        experiment: Option<&str>,
        step: Option<&str>,
        answer: &Approval,
    ) -> Result<(Vec<PendingApproval>, usize), StoreError> {
        let pending = self.pending_approvals(campaign).await?;
        let waiting = pending.len();
        let chosen: Vec<PendingApproval> = pending
            .into_iter()
            .filter(|p| experiment.is_none_or(|e| p.experiment_id == e))
            .filter(|p| step.is_none_or(|s| p.step == s))
            .collect();
        for p in &chosen {
            self.approve(&p.experiment_id, &p.step, answer).await?;
        }
        Ok((chosen, waiting))
    }

    /// The answer given to a waiting step, if any.
    pub async fn approval(
        &self,
        experiment: &str,
        step: &str,
    ) -> Result<Option<Approval>, StoreError> {
        let row = sqlx::query(
            "SELECT approved_by, approved, note FROM approvals WHERE experiment_id = $1 AND step = $2",
        )
        .bind(experiment)
        .bind(step)
        .fetch_optional(self.pool())
        .await
        .map_err(db(format!(
            "reading the approval of {step} of {experiment}"
        )))?;
        row.map(|r| {
            Ok(Approval {
                by: r.try_get(0).map_err(db("reading approvals"))?,
                approved: r.try_get::<i64, _>(1).map_err(db("reading approvals"))? != 0,
                note: r.try_get(2).map_err(db("reading approvals"))?,
            })
        })
        .transpose()
    }

    /// Steps of a campaign waiting for a person, without an approval yet.
    pub async fn pending_approvals(
        &self,
        campaign: &str,
    ) -> Result<Vec<PendingApproval>, StoreError> {
        let rows = sqlx::query(
            "SELECT s.experiment_id, s.step, s.detail, s.state FROM step_events s JOIN experiments e ON e.id = s.experiment_id \
             WHERE e.campaign_id = $1 AND NOT EXISTS (SELECT 1 FROM approvals a WHERE a.experiment_id = s.experiment_id AND a.step = s.step) \
             AND s.version = (SELECT MAX(version) FROM step_events t WHERE t.experiment_id = s.experiment_id AND t.step = s.step) \
             ORDER BY s.experiment_id, s.step",
        )
        .bind(campaign)
        .fetch_all(self.pool())
        .await
        .map_err(db(format!("reading approvals of {campaign}")))?;
        let mut out = Vec::new();
        for r in rows {
            let state: String = r.try_get(3).map_err(db("reading step_events"))?;
            if step_state(&state)? == StepState::Waiting {
                out.push(PendingApproval {
                    experiment_id: r.try_get(0).map_err(db("reading step_events"))?,
                    step: r.try_get(1).map_err(db("reading step_events"))?,
                    message: r
                        .try_get::<Option<String>, _>(2)
                        .map_err(db("reading step_events"))?
                        .unwrap_or_default(),
                });
            }
        }
        Ok(out)
    }

    /// Records a life observed by cycling to end of life (`censored` when cycling stopped first).
    /// Idempotent: the first record stands.
    pub async fn record_observed_life(
        &self,
        experiment: &str,
        cycle_life: f64,
        censored: bool,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO observed_lives (experiment_id, cycle_life, censored, at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (experiment_id) DO NOTHING",
        )
        .bind(experiment)
        .bind(cycle_life)
        .bind(i64::from(censored))
        .bind(now())
        .execute(self.pool())
        .await
        .map_err(db(format!("recording the observed life of {experiment}")))?;
        Ok(())
    }

    /// Records a round's suggestion and all its experiments (each `queued`) in one transaction, so a
    /// crash leaves either the whole round or none of it. Idempotent.
    pub async fn record_round_with_experiments(
        &self,
        campaign: &str,
        round: u32,
        method: &str,
        suggestion_json: &str,
        experiments: &[NewExperiment],
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let at = now();
        let inserted = sqlx::query(
            "INSERT INTO rounds (campaign_id, round, method, suggestion, created_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (campaign_id, round) DO NOTHING",
        )
        .bind(campaign)
        .bind(i64::from(round))
        .bind(method)
        .bind(suggestion_json)
        .bind(&at)
        .execute(&mut *tx)
        .await
        .map_err(db(format!("recording round {round} of {campaign}")))?;
        if inserted.rows_affected() == 0 {
            return Ok(());
        }
        for e in experiments {
            insert_experiment(&mut tx, e, &at).await?;
            for (version, state) in [(1_i64, "proposed"), (2, "queued")] {
                sqlx::query(
                    "INSERT INTO experiment_events (experiment_id, version, state, detail, at) VALUES ($1, $2, $3, NULL, $4)",
                )
                .bind(&e.id)
                .bind(version)
                .bind(state)
                .bind(&at)
                .execute(&mut *tx)
                .await
                .map_err(db(format!("recording {} as {state}", e.id)))?;
            }
        }
        tx.commit()
            .await
            .map_err(db(format!("committing round {round} of {campaign}")))
    }
}
