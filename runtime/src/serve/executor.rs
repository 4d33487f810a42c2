//! The model thread: owns the loaded model (libtorch modules stay on one thread), takes batches
//! from the queue, runs them, and answers each request with its rows of the output.

use super::batcher::{BatchPolicy, BatchQueue, Poll, Rejected};
use super::metrics::Metrics;
use super::v2::{InferRequest, TensorData, V2Error};
use crate::meter::synthetic::BusyTime;
use crate::model::LoadedModel;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tch::{Device, Kind, Tensor};

pub struct Job {
    pub request: InferRequest,
    pub arrived: Instant,
    pub respond: tokio::sync::oneshot::Sender<Result<JobOutput, V2Error>>,
}

pub struct JobOutput {
    /// Output shape for this request: [items, ...].
    pub shape: Vec<i64>,
    pub data: Vec<f32>,
}

/// State shared by the HTTP side, the executor and the controllers.
pub struct Shared {
    pub queue: Mutex<BatchQueue<Job>>,
    pub wake: Condvar,
    pub policy: Mutex<BatchPolicy>,
    pub ready: AtomicBool,
    pub draining: AtomicBool,
    pub stopped: AtomicBool,
    /// Why the model is not ready (load failure), for `/v2/models/{name}/ready`.
    pub not_ready_reason: Mutex<Option<String>>,
    /// Items accepted into the queue (arrivals), for the adaptive controller.
    pub arrivals: AtomicU64,
    pub metrics: Metrics,
    pub busy: BusyTime,
    pub origin: Instant,
    /// One item's output shape, known once the model has loaded.
    pub output_item_shape: Mutex<Option<Vec<i64>>>,
}

impl Shared {
    pub fn new(policy: BatchPolicy, capacity_items: usize) -> Self {
        let metrics = Metrics::new();
        metrics.max_batch_size.set(i64::from(policy.max_batch));
        metrics
            .max_queue_delay
            .set(policy.max_queue_delay.as_secs_f64());
        Shared {
            queue: Mutex::new(BatchQueue::new(capacity_items)),
            wake: Condvar::new(),
            policy: Mutex::new(policy),
            ready: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            not_ready_reason: Mutex::new(Some("loading the model".into())),
            arrivals: AtomicU64::new(0),
            metrics,
            busy: BusyTime::default(),
            origin: Instant::now(),
            output_item_shape: Mutex::new(None),
        }
    }

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    pub fn policy(&self) -> BatchPolicy {
        *self.policy.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_policy(&self, p: BatchPolicy) {
        *self.policy.lock().unwrap_or_else(|e| e.into_inner()) = p;
        self.metrics.max_batch_size.set(i64::from(p.max_batch));
        self.metrics
            .max_queue_delay
            .set(p.max_queue_delay.as_secs_f64());
        self.wake.notify_all();
    }

    /// Queues a job or says why not. The batch cap used for "too large" is the configured maximum,
    /// not the adaptive one, so a request valid at start stays valid.
    pub fn submit(&self, job: Job, hard_max_batch: u32) -> Result<(), Rejected> {
        let items = job.request.items;
        let policy = BatchPolicy {
            max_batch: hard_max_batch,
            ..self.policy()
        };
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        // A refused job is dropped here: its caller answers from the `Rejected` reason.
        q.push(job, items, self.now(), &policy)
            .map_err(|(_, why)| why)?;
        self.metrics.queue_depth.set(q.queued_items() as i64);
        drop(q);
        self.arrivals.fetch_add(u64::from(items), Ordering::Relaxed);
        self.wake.notify_one();
        Ok(())
    }
}

/// Takes the next batch, waiting as the policy says. `None` once draining and empty.
fn next_batch(shared: &Shared) -> Option<Vec<Job>> {
    let mut q = shared.queue.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let policy = shared.policy();
        let draining = shared.draining.load(Ordering::Relaxed);
        // Draining: no new requests arrive, so waiting for a batch to fill would only delay them.
        let policy = if draining {
            BatchPolicy {
                max_queue_delay: Duration::ZERO,
                ..policy
            }
        } else {
            policy
        };
        let now = shared.now();
        match q.poll(now, &policy) {
            Poll::Dispatch(batch) => {
                shared.metrics.queue_depth.set(q.queued_items() as i64);
                return Some(batch);
            }
            Poll::Idle if draining => return None,
            Poll::Idle => {
                q = shared
                    .wake
                    .wait_timeout(q, Duration::from_millis(100))
                    .unwrap_or_else(|p| p.into_inner())
                    .0
            }
            Poll::WaitUntil(t) => {
                let wait = t.saturating_sub(now).max(Duration::from_micros(50));
                q = shared
                    .wake
                    .wait_timeout(q, wait)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        }
    }
}

fn concat(jobs: &[Job]) -> TensorData {
    let mut it = jobs.iter().map(|j| &j.request.data);
    let first = it.next().cloned().unwrap_or(TensorData::F32(vec![]));
    it.fold(first, |mut acc, d| {
        match (&mut acc, d) {
            (TensorData::F32(a), TensorData::F32(b)) => a.extend_from_slice(b),
            (TensorData::I64(a), TensorData::I64(b)) => a.extend_from_slice(b),
            (TensorData::I32(a), TensorData::I32(b)) => a.extend_from_slice(b),
            (TensorData::U8(a), TensorData::U8(b)) => a.extend_from_slice(b),
            // The decoder admits only the model's datatype, so mixed batches cannot occur.
            _ => {}
        }
        acc
    })
}

fn to_tensor(data: &TensorData, shape: &[i64], model: &LoadedModel) -> Tensor {
    let t = match data {
        TensorData::F32(v) => Tensor::from_slice(v),
        TensorData::I64(v) => Tensor::from_slice(v),
        TensorData::I32(v) => Tensor::from_slice(v),
        TensorData::U8(v) => Tensor::from_slice(v),
    };
    let t = t.view(shape);
    let kind = model.input_kind();
    let t = if t.kind() != kind { t.to_kind(kind) } else { t };
    if model.config.device != Device::Cpu {
        t.to_device(model.config.device)
    } else {
        t
    }
}

fn run_batch(model: &LoadedModel, shared: &Shared, jobs: Vec<Job>) {
    let items: u32 = jobs.iter().map(|j| j.request.items).sum();
    let mut shape = vec![i64::from(items)];
    shape.extend_from_slice(&model.config.item_shape);
    let started = Instant::now();
    for j in &jobs {
        shared
            .metrics
            .queue_wait
            .observe(started.duration_since(j.arrived).as_secs_f64());
    }
    let data = concat(&jobs);
    let result = crate::model::catch_torch(|| to_tensor(&data, &shape, model))
        .and_then(|input| model.forward(&input))
        .and_then(|out| {
            crate::model::catch_torch(|| {
                let out = out.to_device(Device::Cpu).to_kind(Kind::Float).contiguous();
                let dims = out.size();
                let flat: Vec<f32> = Vec::<f32>::try_from(out.flatten(0, -1)).unwrap_or_default();
                (dims, flat)
            })
        });
    shared.busy.add(started.elapsed());
    shared.metrics.batches.inc();
    shared.metrics.batch_size.observe(f64::from(items));
    match result {
        Ok((dims, flat)) => {
            shared.metrics.inferences.inc_by(u64::from(items));
            let row: usize = dims.iter().skip(1).product::<i64>().max(1) as usize;
            let mut offset = 0;
            for job in jobs {
                let n = job.request.items as usize * row;
                let mut out_shape = vec![i64::from(job.request.items)];
                out_shape.extend_from_slice(&dims[1..]);
                let data = flat.get(offset..offset + n).map(<[f32]>::to_vec);
                offset += n;
                let reply = data
                    .map(|data| JobOutput {
                        shape: out_shape,
                        data,
                    })
                    .ok_or_else(|| V2Error {
                        status: 500,
                        message: format!(
                            "the model's output {dims:?} does not split into {items} items"
                        ),
                    });
                let _ = job.respond.send(reply);
            }
        }
        Err(e) => {
            tracing::error!(items, "batch failed: {e}");
            for job in jobs {
                let _ = job.respond.send(Err(V2Error {
                    status: 500,
                    message: format!("inference failed: {e}"),
                }));
            }
        }
    }
}

/// The executor thread's body: load, signal readiness, serve batches until drained.
pub fn run(load: impl FnOnce() -> crate::error::Result<LoadedModel>, shared: Arc<Shared>) {
    let model = match load() {
        Ok(m) => m,
        Err(e) => {
            tracing::error!("model load failed: {e}");
            *shared
                .not_ready_reason
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(format!("model load failed: {e}"));
            shared.stopped.store(true, Ordering::Relaxed);
            // Requests already queued cannot be served.
            let mut q = shared.queue.lock().unwrap_or_else(|p| p.into_inner());
            for batch in q.drain_all(&shared.policy()) {
                for job in batch {
                    let _ = job.respond.send(Err(V2Error {
                        status: 503,
                        message: format!("model not loaded: {e}"),
                    }));
                }
            }
            return;
        }
    };
    match model.output_item_shape() {
        Ok(shape) => {
            *shared
                .output_item_shape
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(shape)
        }
        Err(e) => tracing::warn!("could not probe the output shape: {e}"),
    }
    *shared
        .not_ready_reason
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = None;
    shared.ready.store(true, Ordering::Relaxed);
    tracing::info!("model ready");
    while let Some(batch) = next_batch(&shared) {
        run_batch(&model, &shared, batch);
    }
    shared.stopped.store(true, Ordering::Relaxed);
    tracing::info!("executor drained and stopped");
}
