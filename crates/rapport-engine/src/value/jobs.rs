//! Model jobs: each fit runs on its own thread, one at a time per model, and reports its
//! phase and progress while it runs, so the API can answer `202` at once and clients can
//! follow the job. The job list lives in memory (a restart forgets it); what a job produced
//! is in the store. A schedule refits every model in turn at a fixed interval.

use super::{FitSummary, ModelScores, ModelsConfig, ScoreWriter};
use crate::EngineError;
use crate::periodic::Periodic;
use rapport_store::Store;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// With no fit stored yet, the schedule's first run waits this long after start.
const FIRST_RUN_DELAY: Duration = Duration::from_secs(300);
/// Finished jobs remembered for `GET /api/v1/jobs/{id}`.
const KEEP_FINISHED: usize = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    Clv,
    Churn,
    Health,
}

impl ModelKind {
    pub const ALL: [ModelKind; 3] = [ModelKind::Clv, ModelKind::Churn, ModelKind::Health];

    pub fn parse(s: &str) -> Option<ModelKind> {
        ModelKind::ALL.into_iter().find(|m| m.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Clv => "clv",
            ModelKind::Churn => "churn",
            ModelKind::Health => "health",
        }
    }
}

/// Where a running job is; shared between the job's thread and readers.
pub struct Progress {
    phase: Mutex<&'static str>,
    done: AtomicU64,
    total: AtomicU64,
    stop: Arc<AtomicBool>,
}

impl Progress {
    fn new(stop: Arc<AtomicBool>) -> Progress {
        Progress {
            phase: Mutex::new("queued"),
            done: AtomicU64::new(0),
            total: AtomicU64::new(0),
            stop,
        }
    }

    /// Progress nobody reads and nothing stops: for running a job inline (tests, tools).
    pub fn detached() -> Progress {
        Progress::new(Arc::new(AtomicBool::new(false)))
    }

    /// Starts a phase of `total` steps.
    pub fn phase(&self, name: &'static str, total: u64) {
        *self.phase.lock().unwrap_or_else(|p| p.into_inner()) = name;
        self.total.store(total, Ordering::Relaxed);
        self.done.store(0, Ordering::Relaxed);
    }

    pub fn set(&self, done: u64) {
        self.done.store(done, Ordering::Relaxed);
    }

    pub fn add(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }

    /// Fails once shutdown has been asked for, so long jobs stop between batches.
    pub fn check(&self) -> Result<(), EngineError> {
        if self.stop.load(Ordering::Acquire) {
            Err(EngineError::ShuttingDown)
        } else {
            Ok(())
        }
    }

    fn snapshot(&self) -> (&'static str, u64, u64) {
        (
            *self.phase.lock().unwrap_or_else(|p| p.into_inner()),
            self.done.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed),
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Running,
    Succeeded,
    Failed,
}

/// A job as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct JobView {
    pub id: String,
    pub model: ModelKind,
    pub state: JobState,
    pub phase: &'static str,
    pub done: u64,
    pub total: u64,
    pub started_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// The fit summary, once succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<FitSummary>,
    /// What a succeeded fit could not stand behind, in plain words (the summary's
    /// `warnings`); empty otherwise.
    pub warnings: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

struct Job {
    id: String,
    model: ModelKind,
    state: JobState,
    started_ms: i64,
    finished_ms: Option<i64>,
    result: Option<FitSummary>,
    error: Option<String>,
    progress: Arc<Progress>,
}

impl Job {
    fn view(&self) -> JobView {
        let (phase, done, total) = self.progress.snapshot();
        JobView {
            id: self.id.clone(),
            model: self.model,
            state: self.state,
            phase: match self.state {
                JobState::Running => phase,
                JobState::Succeeded => "done",
                JobState::Failed => "failed",
            },
            done,
            total,
            started_at: super::rfc3339(self.started_ms),
            finished_at: self.finished_ms.map(super::rfc3339),
            warnings: self
                .result
                .as_ref()
                .map(|r| r.warnings().to_vec())
                .unwrap_or_default(),
            result: self.result.clone(),
            error: self.error.clone(),
        }
    }
}

/// The value models of one Rapport instance: configuration, running jobs, their results.
pub struct Models {
    store: Arc<dyn Store>,
    config: ModelsConfig,
    writer: ScoreWriter,
    jobs: Mutex<Vec<Job>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    stop: Arc<AtomicBool>,
}

fn wall_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Models {
    pub fn new(store: Arc<dyn Store>, config: ModelsConfig) -> Result<Arc<Models>, EngineError> {
        config.validate()?;
        Ok(Arc::new(Models {
            store,
            config,
            writer: ScoreWriter::default(),
            jobs: Mutex::new(Vec::new()),
            threads: Mutex::new(Vec::new()),
            stop: Arc::new(AtomicBool::new(false)),
        }))
    }

    pub fn config(&self) -> &ModelsConfig {
        &self.config
    }

    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    /// Fits `model` on the data as of `now_ms`, writes its scores and fit summary, and
    /// returns the summary. Runs on the calling thread.
    pub fn run(
        &self,
        model: ModelKind,
        now_ms: i64,
        progress: &Progress,
    ) -> Result<FitSummary, EngineError> {
        let store = self.store.as_ref();
        let started = Instant::now();
        let (config, writer) = (&self.config, &self.writer);
        let mut summary = match model {
            ModelKind::Clv => {
                FitSummary::Clv(super::fit_clv(store, config, now_ms, progress, writer)?)
            }
            ModelKind::Churn => {
                FitSummary::Churn(super::fit_churn(store, config, now_ms, progress, writer)?)
            }
            ModelKind::Health => {
                FitSummary::Health(super::run_health(store, config, now_ms, progress, writer)?)
            }
        };
        summary.set_duration_ms(started.elapsed().as_millis() as u64);
        super::store_fit(store, model, now_ms, &summary)?;
        Ok(summary)
    }

    /// Starts a job for `model` on its own thread. Refused while one for the same model runs.
    pub fn start(self: &Arc<Self>, model: ModelKind, now_ms: i64) -> Result<JobView, EngineError> {
        if self.stop.load(Ordering::Acquire) {
            return Err(EngineError::ShuttingDown);
        }
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(running) = jobs
            .iter()
            .find(|j| j.model == model && j.state == JobState::Running)
        {
            return Err(EngineError::Conflict(format!(
                "a {} fit is already running: job {}",
                model.as_str(),
                running.id
            )));
        }
        let progress = Arc::new(Progress::new(self.stop.clone()));
        let id = format!("job_{}", uuid::Uuid::now_v7().simple());
        let job = Job {
            id: id.clone(),
            model,
            state: JobState::Running,
            started_ms: now_ms,
            finished_ms: None,
            result: None,
            error: None,
            progress: progress.clone(),
        };
        let view = job.view();
        jobs.push(job);
        let finished = jobs.iter().filter(|j| j.state != JobState::Running).count();
        if finished > KEEP_FINISHED {
            let mut drop = finished - KEEP_FINISHED;
            jobs.retain(|j| {
                let old = drop > 0 && j.state != JobState::Running;
                drop -= usize::from(old);
                !old
            });
        }
        drop(jobs);
        let me = self.clone();
        let handle = std::thread::Builder::new()
            .name(format!("fit-{}", model.as_str()))
            .spawn(move || {
                let started = Instant::now();
                let outcome = me.run(model, now_ms, &progress);
                let label = if outcome.is_ok() { "succeeded" } else { "failed" };
                metrics::counter!("rapport_model_fits_total", "model" => model.as_str(), "outcome" => label)
                    .increment(1);
                metrics::histogram!("rapport_model_fit_seconds", "model" => model.as_str())
                    .record(started.elapsed().as_secs_f64());
                match &outcome {
                    Ok(_) => tracing::info!(model = model.as_str(), %id, "model fitted"),
                    // Expected on a young data set: nothing is wrong with Rapport.
                    Err(e @ EngineError::InsufficientData(_)) => {
                        tracing::info!(model = model.as_str(), %id, reason = %e, "model not fitted")
                    }
                    Err(e) => {
                        tracing::warn!(model = model.as_str(), %id, error = %e, "model fit failed")
                    }
                }
                let mut jobs = me.jobs.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(job) = jobs.iter_mut().find(|j| j.id == id) {
                    job.finished_ms = Some(wall_ms());
                    match outcome {
                        Ok(summary) => {
                            job.state = JobState::Succeeded;
                            job.result = Some(summary);
                        }
                        Err(e) => {
                            job.state = JobState::Failed;
                            job.error = Some(public_message(&e));
                        }
                    }
                }
            })
            .map_err(|e| EngineError::Store(format!("cannot start a job thread: {e}")))?;
        let mut threads = self.threads.lock().unwrap_or_else(|p| p.into_inner());
        threads.retain(|t| !t.is_finished());
        threads.push(handle);
        Ok(view)
    }

    pub fn job(&self, id: &str) -> Option<JobView> {
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        jobs.iter().find(|j| j.id == id).map(Job::view)
    }

    /// Recent jobs, newest first.
    pub fn jobs(&self) -> Vec<JobView> {
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        jobs.iter().rev().map(Job::view).collect()
    }

    pub fn latest_fit(&self, model: ModelKind) -> Result<Option<FitSummary>, EngineError> {
        ModelScores {
            store: self.store.as_ref(),
        }
        .latest_fit(model)
    }

    /// Waits for a job to finish (or `timeout`), returning its last view.
    pub fn wait(&self, id: &str, timeout: Duration) -> Option<JobView> {
        let deadline = Instant::now() + timeout;
        loop {
            let view = self.job(id)?;
            if view.state != JobState::Running || Instant::now() >= deadline {
                return Some(view);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Asks running jobs to stop at their next batch and waits for them.
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::Release);
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }
}

/// Store failures are logged, not shown: a job's error says what a user can act on.
fn public_message(e: &EngineError) -> String {
    match e {
        EngineError::Store(detail) => {
            tracing::error!(%detail, "storage error in a model job");
            "storage failed during the job; see the server log".into()
        }
        EngineError::Corrupt(detail) => {
            tracing::error!(%detail, "corrupt stored data in a model job");
            "stored data could not be read during the job; see the server log".into()
        }
        other => other.to_string(),
    }
}

/// The refit schedule: every `interval`, fits CLV, then churn (which reads nothing of
/// CLV), then health (which reads both), each as a job like a manual fit.
pub struct Schedule(Periodic);

impl Schedule {
    /// Starts the schedule; `None` when the interval is 0 (off). The first run comes one
    /// interval after the latest stored CLV fit, or a few minutes after start when there is
    /// none (time for the processor to catch up with a log it has not read yet).
    pub fn start(models: Arc<Models>) -> Option<Schedule> {
        let hours = models.config.refit_interval_hours;
        if hours == 0 {
            return None;
        }
        Some(Schedule::every(
            models,
            Duration::from_secs(hours * 3600),
            None,
        ))
    }

    /// Runs every `interval`, the first time after `first` (when `None`: one interval after
    /// the latest stored CLV fit, or [`FIRST_RUN_DELAY`] without one).
    pub fn every(models: Arc<Models>, interval: Duration, first: Option<Duration>) -> Schedule {
        let reader = models.clone();
        let first = move || {
            let last = reader
                .latest_fit(ModelKind::Clv)
                .ok()
                .flatten()
                .and_then(|f| rapport_core::event::parse_timestamp(f.fitted_at()))
                .map(|t| t.timestamp_millis());
            first.unwrap_or_else(|| match last {
                Some(ms) => Duration::from_millis(
                    (ms + interval.as_millis() as i64 - wall_ms()).max(0) as u64,
                ),
                None => FIRST_RUN_DELAY.min(interval),
            })
        };
        Schedule(Periodic::spawn(
            "model-schedule",
            first,
            interval,
            move || {
                for model in ModelKind::ALL {
                    match models.start(model, wall_ms()) {
                        Ok(job) => {
                            models.wait(&job.id, Duration::from_secs(30 * 86_400));
                        }
                        Err(EngineError::ShuttingDown) => return false,
                        Err(e) => {
                            tracing::info!(model = model.as_str(), error = %e, "scheduled fit skipped")
                        }
                    }
                }
                true
            },
        ))
    }

    pub fn stop(self) {
        self.0.stop();
    }
}
