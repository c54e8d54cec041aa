//! A campaign from its workflow to its end, as `labloop run` and `labloop resume` run it: the
//! workflow's plugins, model and instruments built, the campaign driven through the pauses people
//! ask for ([`run_until_over`]: such a pause waits for their resume request), the plugins shut
//! down however it ended, and a campaign on simulated cyclers scored against the simulator's
//! truth.

use crate::remote::POLL;
use crate::{CampaignResult, CampaignRunner, EngineError, EngineEvent, Ownership};
use labloop_sim::SimulatorTruth;
use labloop_store::{RequestAction, Store};
use labloop_workflow::{Diagnostic, Workflow};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

/// A campaign to start or go on with.
pub struct Launch {
    /// The workflow as run.
    pub workflow: Workflow,
    /// Its text as the store keeps it.
    pub text: String,
    /// A new campaign's workflow bundle (JSON, [`labloop_workflow::Bundle`]), or the campaign to
    /// resume.
    pub start: Start,
    /// The folder the workflow's plugins start in (its own, else the working directory).
    pub folder: PathBuf,
    /// The store's URL.
    pub store_url: String,
    /// Who runs it.
    pub ownership: Ownership,
}

/// A new campaign or one recorded in the store.
pub enum Start {
    /// A new campaign, with the workflow's bundle (JSON).
    New {
        /// [`labloop_workflow::Bundle::to_json`].
        bundle: String,
    },
    /// The campaign with this id, from where its store left it.
    Resume {
        /// The campaign.
        campaign: String,
    },
}

/// How a launched campaign ended.
pub enum Launched {
    /// It finished; on simulated cyclers only, how its recommendation and predictions compare with
    /// the simulator's truth.
    Finished {
        /// The campaign's result.
        result: CampaignResult,
        /// The simulator's verdict, when every instrument is simulated.
        simulator_truth: Option<SimulatorTruth>,
    },
    /// It paused (Ctrl-C, a step's `on_failure: pause_campaign`, or a pause asked for while the
    /// process was told to quit): `labloop resume` continues it.
    Paused {
        /// The campaign.
        campaign: String,
        /// Why.
        reason: String,
    },
}

/// Command-line values that override a workflow file's.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// Store URL (else the workflow's, else `sqlite://labloop-data/<campaign>.sqlite`).
    pub store: Option<String>,
    /// `stopping.max_rounds`.
    pub rounds: Option<u32>,
    /// `campaign.seed`.
    pub seed: Option<u64>,
}

/// A launch, or the problems that keep its workflow from running (located in its text).
pub type Prepared = Result<Launch, Vec<Diagnostic>>;

impl Launch {
    /// A new campaign from the workflow file at `path`, with `overrides` applied. The workflow as
    /// run (overrides applied) is what the store keeps, with the text of every file it includes, so
    /// a resume runs the same from the store alone.
    pub fn from_file(
        path: &Path,
        overrides: Overrides,
        ownership: Ownership,
    ) -> Result<Prepared, EngineError> {
        let refused = EngineError::Input;
        let text = labloop_workflow::read_file(path)
            .map_err(|e| refused(format!("reading {}: {e}", path.display())))?;
        let (workflow, problems) = labloop_workflow::parse(&text, &path.display().to_string());
        let mut workflow = match workflow {
            Some(w) if problems.is_empty() => w,
            _ => return Ok(Err(problems)),
        };
        if let Some(rounds) = overrides.rounds {
            if rounds == 0 {
                return Err(refused("--rounds must be at least 1".into()));
            }
            workflow.stopping.max_rounds = rounds;
        }
        if let Some(seed) = overrides.seed {
            workflow.campaign.seed = seed;
        }
        let store_url = overrides
            .store
            .or_else(|| workflow.store.url.clone())
            .unwrap_or_else(|| format!("sqlite://labloop-data/{}.sqlite", workflow.campaign.name));
        let recorded = if overrides.rounds.is_some() || overrides.seed.is_some() {
            workflow
                .to_yaml_as_run()
                .map_err(|e| refused(format!("recording the workflow: {e}")))?
        } else {
            text
        };
        let bundle = labloop_workflow::Bundle::new(&recorded, &path.display().to_string());
        Ok(Ok(Self {
            folder: workflow_folder(bundle.folder.as_deref()),
            workflow,
            text: recorded,
            start: Start::New {
                bundle: bundle.to_json(),
            },
            store_url,
            ownership,
        }))
    }

    /// The campaign `campaign` recorded in the store at `store_url`, to go on with: its workflow
    /// is read from the store alone (includes and all), whatever the working directory.
    pub async fn from_store(
        campaign: &str,
        store_url: &str,
        ownership: Ownership,
    ) -> Result<Prepared, EngineError> {
        let store = Store::open(store_url).await?;
        let row = store.campaign(campaign).await;
        store.close().await;
        let Some(row) = row? else {
            return Err(EngineError::Input(format!(
                "no campaign `{campaign}` in {}; `labloop status --store ...` lists them",
                labloop_store::redact(store_url)
            )));
        };
        let bundle = row.workflow_bundle.as_deref();
        let (workflow, problems) =
            labloop_workflow::parse_stored(&row.workflow_yaml, bundle, campaign);
        let workflow = match workflow {
            Some(w) if problems.is_empty() => w,
            _ => return Ok(Err(problems)),
        };
        let folder = bundle
            .and_then(|b| labloop_workflow::Bundle::from_json(b).ok())
            .and_then(|b| b.folder);
        Ok(Ok(Self {
            workflow,
            text: row.workflow_yaml,
            start: Start::Resume {
                campaign: campaign.to_owned(),
            },
            folder: workflow_folder(folder.as_deref()),
            store_url: store_url.to_owned(),
            ownership,
        }))
    }

    /// Runs the campaign to its end or its pause. `events` get the engine's progress; `quit`
    /// turning true pauses it (tests already running go on); `notify` hears when it waits for a
    /// resume request and when one came.
    pub async fn run(
        self,
        events: mpsc::UnboundedSender<EngineEvent>,
        quit: watch::Receiver<bool>,
        notify: impl Fn(PauseNotice<'_>),
    ) -> Result<Launched, EngineError> {
        let plugins = crate::instruments::plugins(&self.workflow, &self.store_url, &self.folder)?;
        let ended = self.drive(&plugins, events, quit, notify).await;
        // Plugins finish what they were doing and exit (a campaign paused or failed included).
        plugins.shutdown().await;
        ended
    }

    async fn drive(
        self,
        plugins: &labloop_plugin::Plugins,
        events: mpsc::UnboundedSender<EngineEvent>,
        quit: watch::Receiver<bool>,
        notify: impl Fn(PauseNotice<'_>),
    ) -> Result<Launched, EngineError> {
        let model = crate::workflow_predictor(&self.workflow, plugins).await?;
        let (instruments, sims) =
            crate::instruments::build(&self.workflow, &self.store_url, plugins)?;
        let store = Store::connect(&self.store_url).await?;
        let (bundle, resume) = match self.start {
            Start::New { bundle } => (Some(bundle), None),
            Start::Resume { campaign } => (None, Some(campaign)),
        };
        let runner = || {
            let runner = CampaignRunner::new(
                self.workflow.clone(),
                self.text.clone(),
                store.clone(),
                instruments.clone(),
                Arc::clone(&model),
            )
            .with_events(events.clone())
            .with_pause(quit.clone())
            .with_ownership(self.ownership.clone());
            match &bundle {
                Some(b) => runner.with_workflow_bundle(b.clone()),
                None => runner,
            }
        };
        let result = match run_until_over(runner, &store, resume, quit.clone(), notify).await? {
            RunOutcome::Finished(result) => result,
            RunOutcome::Paused { campaign, reason } => {
                return Ok(Launched::Paused { campaign, reason });
            }
        };
        let all_simulated = !sims.is_empty() && sims.len() == self.workflow.instruments.len();
        let simulator_truth = match self.workflow.protocol_space() {
            Some(space) if all_simulated => Some(SimulatorTruth::score(
                &space.enumerate(),
                result.ranking[0].candidate_index,
                &sims,
                &predicted_lives(&store, &result.campaign).await?,
            )),
            _ => None,
        };
        Ok(Launched::Finished {
            result,
            simulator_truth,
        })
    }
}

/// The folder a workflow's plugins start in (and their relative paths start from): the one its
/// bundle names, else the working directory.
fn workflow_folder(recorded: Option<&str>) -> PathBuf {
    recorded
        .map(PathBuf::from)
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_else(|| ".".into())
}

/// (cell id, predicted life) of every predicted experiment of `campaign`.
async fn predicted_lives(store: &Store, campaign: &str) -> Result<Vec<(String, f64)>, EngineError> {
    let cells: std::collections::HashMap<String, String> = store
        .experiments(campaign)
        .await?
        .into_iter()
        .map(|e| (e.id, e.cell_id))
        .collect();
    Ok(store
        .observations(campaign)
        .await?
        .into_iter()
        .filter_map(|o| {
            cells
                .get(&o.experiment_id)
                .map(|c| (c.clone(), o.prediction.cycle_life))
        })
        .collect())
}

/// Waits until someone asks (through the store) to resume `campaign` — one paused by a person's
/// request — and marks the request handled.
pub async fn wait_for_resume(
    store: &labloop_store::Store,
    campaign: &str,
) -> Result<(), labloop_store::StoreError> {
    loop {
        for request in store.requests(campaign, true).await? {
            if request.action == RequestAction::Resume {
                store.handled(&request.id).await?;
                tracing::info!(request = %request.id, by = %request.requested_by, "resume request");
                return Ok(());
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

/// How [`run_until_over`] left a campaign.
#[derive(Debug)]
pub enum RunOutcome {
    /// It ran to its end.
    Finished(CampaignResult),
    /// It stands paused — by `quit` (Ctrl-C), by a step's `on_failure: pause_campaign`, or by a
    /// person while `quit` fired — and `labloop resume` continues it.
    Paused {
        /// The campaign.
        campaign: String,
        /// Why.
        reason: String,
    },
}

/// What [`run_until_over`] tells its caller about a pause a person asked for.
#[derive(Debug)]
pub enum PauseNotice<'a> {
    /// Paused by a person: waiting for their resume request.
    Waiting {
        /// The campaign.
        campaign: &'a str,
        /// Who paused it and how.
        reason: &'a str,
    },
    /// A resume request came: the campaign goes on from the store.
    Resumed {
        /// The campaign.
        campaign: &'a str,
    },
}

/// Runs a campaign — a new one, or `resume` — until it is over, through the pauses people ask for
/// (the dashboard, the API): such a pause waits for their resume request ([`wait_for_resume`]) and
/// goes on from the store with a fresh runner from `runner`. A pause by `quit` (Ctrl-C; give the
/// runners the same receiver with [`CampaignRunner::with_pause`]) or by a step ends the run, as
/// does `quit` while waiting.
pub async fn run_until_over(
    runner: impl Fn() -> CampaignRunner,
    store: &Store,
    mut resume: Option<String>,
    quit: watch::Receiver<bool>,
    notify: impl Fn(PauseNotice<'_>),
) -> Result<RunOutcome, EngineError> {
    loop {
        let stretch = match &resume {
            Some(campaign) => runner().resume(campaign).await,
            None => runner().run().await,
        };
        match stretch {
            Ok(result) => return Ok(RunOutcome::Finished(result)),
            Err(EngineError::Paused {
                campaign,
                reason,
                by_request: true,
            }) if !*quit.borrow() => {
                notify(PauseNotice::Waiting {
                    campaign: &campaign,
                    reason: &reason,
                });
                let mut quitting = quit.clone();
                tokio::select! {
                    resumed = wait_for_resume(store, &campaign) => resumed?,
                    _ = quitting.wait_for(|q| *q) => {
                        return Ok(RunOutcome::Paused { campaign, reason });
                    }
                }
                notify(PauseNotice::Resumed {
                    campaign: &campaign,
                });
                resume = Some(campaign);
            }
            Err(EngineError::Paused {
                campaign, reason, ..
            }) => return Ok(RunOutcome::Paused { campaign, reason }),
            Err(other) => return Err(other),
        }
    }
}
