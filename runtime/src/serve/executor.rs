//! The model thread: owns the loaded model (libtorch modules stay on one thread), takes batches
//! from the queue, runs them, and answers each request with its rows of the output.

use super::batcher::{BatchPolicy, BatchQueue, Poll, Rejected};
use super::metrics::Metrics;
use super::staging::Staging;
use super::v2::{InferRequest, V2Error};
use crate::meter::synthetic::BusyTime;
use crate::model::LoadedModel;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
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

/// Batches failing in a row, none running, after which the model is tried on an example input of
/// its own; when that fails too the server reports itself broken (not ready, not live). A model
/// can fail on some clients' inputs (ids out of range, its own asserts): that alone is no reason
/// to restart it.
pub const BROKEN_AFTER_FAILED_BATCHES: u32 = 10;

/// State shared by the HTTP side, the executor and the controllers.
pub struct Shared {
    pub queue: Mutex<BatchQueue<Job>>,
    pub wake: Condvar,
    pub policy: Mutex<BatchPolicy>,
    pub ready: AtomicBool,
    /// SIGTERM received: not ready (the endpoints let go of the pod), still serving until the
    /// shutdown delay ends and draining starts.
    pub terminating: AtomicBool,
    pub draining: AtomicBool,
    pub stopped: AtomicBool,
    /// Why the model is not ready (loading, load failure, broken), for the readiness endpoints:
    /// [`Shared::not_ready_reason`].
    not_ready: Mutex<Option<String>>,
    /// Batches failed since the last one that ran.
    pub failed_in_a_row: AtomicU32,
    /// The model failed [`BROKEN_AFTER_FAILED_BATCHES`] batches in a row: not ready, not live
    /// (a sticky CUDA error leaves every later batch failing; a restart gets a fresh context).
    pub broken: AtomicBool,
    /// Items offered to the queue — accepted, or refused because it was full — for the adaptive
    /// controller: the demand, which accepted items alone would cap at what the current
    /// configuration serves.
    pub arrivals: AtomicU64,
    pub metrics: Metrics,
    pub busy: BusyTime,
    /// A batch is on the model now (a batch can run longer than an energy tick: a tick with no
    /// batch finished is idle only when none is running either).
    pub executing: AtomicBool,
    pub origin: Instant,
    /// One item's output shape, known once the model has loaded.
    pub output_item_shape: Mutex<Option<Vec<i64>>>,
    /// The configured (hard) max batch size: the cap of padded shapes.
    pub max_batch: u32,
    /// Pad batches to `padded_size` shapes (decided once the device is known).
    pub pad: AtomicBool,
    pad_mode: crate::cli::PadBatches,
}

impl Shared {
    /// Why the model is not ready, when it is not.
    pub fn not_ready_reason(&self) -> Option<String> {
        self.not_ready
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_not_ready_reason(&self, reason: Option<String>) {
        *self.not_ready.lock().unwrap_or_else(|p| p.into_inner()) = reason;
    }

    pub fn new(
        policy: BatchPolicy,
        capacity_items: usize,
        pad_mode: crate::cli::PadBatches,
    ) -> Self {
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
            terminating: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            not_ready: Mutex::new(Some("loading the model".into())),
            failed_in_a_row: AtomicU32::new(0),
            broken: AtomicBool::new(false),
            arrivals: AtomicU64::new(0),
            metrics,
            busy: BusyTime::default(),
            executing: AtomicBool::new(false),
            origin: Instant::now(),
            output_item_shape: Mutex::new(None),
            max_batch: policy.max_batch,
            pad: AtomicBool::new(false),
            pad_mode,
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

    /// Drops the queued requests whose clients left (their connection closed, their gRPC call
    /// cancelled: the reply's receiver is gone) before they take room in a batch, and counts them.
    fn drop_abandoned(&self, q: &mut BatchQueue<Job>) {
        let abandoned = q.discard(|job| job.respond.is_closed());
        if abandoned > 0 {
            self.metrics.abandoned_requests.inc_by(abandoned as u64);
            self.metrics.queue_depth.set(q.queued_items() as i64);
        }
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
        // Checked under the queue lock, which the model thread holds when it sees the drain with
        // an empty queue and stops: a job admitted a moment before the drain began would
        // otherwise wait in a queue nobody takes from.
        if self.draining.load(Ordering::Relaxed) {
            return Err(Rejected::Draining);
        }
        // A refused job is dropped here: its caller answers from the `Rejected` reason.
        let mut pushed = q.push(job, items, self.now(), &policy);
        // Full, maybe of requests whose clients left since the model thread last looked.
        if let Err((job, Rejected::Full { .. })) = pushed {
            self.drop_abandoned(&mut q);
            pushed = q.push(job, items, self.now(), &policy);
        }
        self.metrics.queue_depth.set(q.queued_items() as i64);
        drop(q);
        if matches!(pushed, Ok(()) | Err((_, Rejected::Full { .. }))) {
            self.arrivals.fetch_add(u64::from(items), Ordering::Relaxed);
        }
        pushed.map_err(|(_, why)| why)?;
        self.wake.notify_one();
        Ok(())
    }
}

/// Takes the next batch, waiting as the policy says. `None` once draining and empty.
fn next_batch(shared: &Shared) -> Option<Vec<Job>> {
    let mut q = shared.queue.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        shared.drop_abandoned(&mut q);
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

/// The batch shape a batch of `items` runs at when padding: the next power of two, capped at
/// `max_batch` (and never below `items`). A handful of shapes means cuDNN autotunes each once, at
/// start-up, instead of in the middle of requests for every new batch size.
pub fn padded_size(items: u32, max_batch: u32) -> u32 {
    items
        .max(1)
        .checked_next_power_of_two()
        .unwrap_or(u32::MAX)
        .min(max_batch)
        .max(items)
}

/// Every shape `padded_size` can produce for a max batch size, ascending.
pub fn padded_shapes(max_batch: u32) -> Vec<u32> {
    let mut shapes: Vec<u32> = (0..32)
        .map(|i| 1u32 << i)
        .take_while(|s| *s < max_batch)
        .collect();
    shapes.push(max_batch.max(1));
    shapes
}

/// The staged host batch as the model's input: on the model's device, in its input kind. On CUDA the
/// copy from the pinned buffer is asynchronous; the model runs after it on the same stream.
fn to_model_input(host: Tensor, model: &LoadedModel) -> Tensor {
    let (device, kind) = (model.config.device, model.input_kind());
    if device.is_cuda() {
        host.to_device_(device, kind, true, false)
    } else if host.kind() != kind {
        host.to_kind(kind)
    } else {
        host
    }
}

/// Sets a flag for as long as it lives (whatever way the batch ends).
struct Raised<'a>(&'a AtomicBool);

impl<'a> Raised<'a> {
    fn new(flag: &'a AtomicBool) -> Self {
        flag.store(true, Ordering::Relaxed);
        Raised(flag)
    }
}

impl Drop for Raised<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

fn run_batch(model: &LoadedModel, staging: &mut Staging, shared: &Shared, jobs: Vec<Job>) {
    let _executing = Raised::new(&shared.executing);
    let items: u32 = jobs.iter().map(|j| j.request.items).sum();
    let run_size = if shared.pad.load(Ordering::Relaxed) {
        padded_size(items, shared.max_batch)
    } else {
        items
    };
    let mut shape = vec![i64::from(run_size)];
    shape.extend_from_slice(&model.config.item_shape);
    let started = Instant::now();
    for j in &jobs {
        shared
            .metrics
            .queue_wait
            .observe(started.duration_since(j.arrived).as_secs_f64());
    }
    // The staging buffer is reused: forward synchronises after a batch that ran, and this covers a
    // batch that failed with work still in flight. A CUDA error here fails this batch.
    let ready = model.synchronize();
    if run_size > items {
        shared
            .metrics
            .padding_items
            .inc_by(u64::from(run_size - items));
    }
    let metrics = &shared.metrics;
    let input = ready
        .and_then(|()| {
            staging
                .batch(
                    jobs.iter().map(|j| &j.request.data),
                    &shape,
                    model.config.device,
                )
                .map_err(crate::model::ForwardError::Failed)
        })
        .and_then(|host| crate::model::catch_torch(|| to_model_input(host, model)));
    metrics.add_stage_time("assemble", started);
    let forward_started = Instant::now();
    let output = input.and_then(|input| model.forward(&input));
    metrics.add_stage_time("forward", forward_started);
    let respond_started = Instant::now();
    let result = output.and_then(|out| {
        crate::model::catch_torch(|| {
            // Only the real items' rows leave the device; padding rows are dropped here.
            let out = out
                .narrow(0, 0, i64::from(items))
                .to_device(Device::Cpu)
                .to_kind(Kind::Float)
                .contiguous();
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
            shared.failed_in_a_row.store(0, Ordering::Relaxed);
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
        // One request's input can fail the model (a value it asserts on, an id out of range):
        // the requests batched with it are run again one by one, so only those at fault fail.
        // (A device that fails everything fails each of them too, and counts towards broken.)
        Err(e) if jobs.len() > 1 => {
            tracing::warn!(
                items,
                requests = jobs.len(),
                "batch failed, running its requests one at a time: {e}"
            );
            metrics.add_stage_time("respond", respond_started);
            for job in jobs {
                run_batch(model, staging, shared, vec![job]);
            }
            return;
        }
        Err(e) => {
            tracing::error!(items, "batch failed: {e}");
            let failed = shared.failed_in_a_row.fetch_add(1, Ordering::Relaxed) + 1;
            if failed >= BROKEN_AFTER_FAILED_BATCHES {
                match model.example_input(1).and_then(|x| model.forward(&x)) {
                    Ok(_) => {
                        tracing::warn!(
                            failed,
                            "batches failed in a row, but the model runs an example input: its inputs make it fail"
                        );
                        shared.failed_in_a_row.store(0, Ordering::Relaxed);
                    }
                    Err(probe) => {
                        let why = format!(
                            "the model failed {failed} batches in a row (the last: {e}) and an example input of its own ({probe}): not ready, not live, so that Kubernetes restarts the container"
                        );
                        tracing::error!("{why}");
                        shared.set_not_ready_reason(Some(why));
                        shared.ready.store(false, Ordering::Relaxed);
                        shared.broken.store(true, Ordering::Relaxed);
                    }
                }
            }
            for job in jobs {
                let _ = job.respond.send(Err(V2Error {
                    status: 500,
                    message: format!("inference failed: {e}"),
                }));
            }
        }
    }
    metrics.add_stage_time("respond", respond_started);
}

/// The executor thread's body: load, signal readiness, serve batches until drained.
pub fn run(load: impl FnOnce() -> Result<LoadedModel, String>, shared: Arc<Shared>) {
    let model = match load() {
        Ok(m) => m,
        Err(e) => {
            tracing::error!("model load failed: {e}");
            shared.set_not_ready_reason(Some(format!("model load failed: {e}")));
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
    let pad = match shared.pad_mode {
        crate::cli::PadBatches::On => true,
        crate::cli::PadBatches::Off => false,
        crate::cli::PadBatches::Auto => model.config.device.is_cuda(),
    };
    shared.pad.store(pad, Ordering::Relaxed);
    if pad {
        // Run every padded shape once before declaring readiness: cuDNN autotunes it now, not
        // under live requests.
        let started = Instant::now();
        let shapes = padded_shapes(shared.max_batch);
        for &size in &shapes {
            if let Err(e) = model.example_input(size).and_then(|x| model.forward(&x)) {
                tracing::warn!(size, "warm-up of batch shape failed: {e}");
            }
        }
        tracing::info!(shapes = ?shapes, seconds = format!("{:.1}", started.elapsed().as_secs_f64()), "batch shapes warmed up");
    }
    *shared
        .output_item_shape
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = Some(model.output_item_shape().to_vec());
    let mut staging = Staging::default();
    // The largest batch's buffer now (pinned memory is slow to allocate), not under live traffic.
    if let Some(kind) = super::staging::request_kind(model.config.dtype) {
        let elements = model.config.item_shape.iter().product::<i64>().max(0) as usize;
        let elements = elements.saturating_mul(shared.max_batch as usize);
        if let Err(e) = staging.reserve(kind, elements, model.config.device) {
            tracing::warn!("{e}; batches will allocate their own");
        }
    }
    if model.config.cuda_graphs && !pad {
        tracing::warn!(
            "CUDA graphs without padded batches: every new batch size is captured when it first arrives, under live traffic"
        );
    }
    let device = crate::device::name(model.config.device);
    let graph = model.graph();
    let model_info = |graph: String| super::metrics::ModelLabels {
        device: device.clone(),
        graph,
    };
    shared.metrics.set_model_info(model_info(graph.clone()));
    // The only change at run time: CUDA graphs abandoned after a failed capture.
    let mut graphs_active = model.cuda_graphs_active();
    shared.set_not_ready_reason(None);
    shared.ready.store(true, Ordering::Relaxed);
    tracing::info!(graph, "model ready");
    while let Some(batch) = next_batch(&shared) {
        run_batch(&model, &mut staging, &shared, batch);
        if graphs_active && !model.cuda_graphs_active() {
            graphs_active = false;
            shared.metrics.set_model_info(model_info(model.graph()));
        }
    }
    shared.stopped.store(true, Ordering::Relaxed);
    tracing::info!("executor drained and stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job of `items` zeros, and the receiver its answer goes to (dropped: the client left).
    fn job(
        items: u32,
    ) -> (
        Job,
        tokio::sync::oneshot::Receiver<Result<JobOutput, V2Error>>,
    ) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job = Job {
            request: crate::serve::v2::InferRequest {
                id: None,
                items,
                data: crate::serve::v2::TensorData::F32(vec![0.0; items as usize]),
                outputs: vec![],
                binary_outputs: false,
            },
            arrived: std::time::Instant::now(),
            respond: tx,
        };
        (job, rx)
    }

    #[test]
    fn once_the_drain_began_nothing_more_is_queued() {
        // The model thread stops at the first empty queue it sees draining; a job queued after
        // that would never be answered, so it is refused instead (503 to its client).
        let shared = Shared::new(
            BatchPolicy {
                max_batch: 4,
                max_queue_delay: Duration::from_millis(1),
            },
            64,
            crate::cli::PadBatches::Off,
        );
        let (before, _waiting) = job(1);
        assert!(shared.submit(before, 4).is_ok());
        // A caller that leaves while queued: dropped unrun, counted, its room freed.
        let (left, gone) = job(1);
        assert!(shared.submit(left, 4).is_ok());
        drop(gone);
        shared.draining.store(true, Ordering::Relaxed);
        assert!(matches!(
            shared.submit(job(1).0, 4),
            Err(Rejected::Draining)
        ));
        // What was queued before is still taken, then the thread stops.
        assert_eq!(next_batch(&shared).map(|b| b.len()), Some(1));
        assert_eq!(shared.metrics.abandoned_requests.get(), 1);
        assert_eq!(shared.queue.lock().unwrap().queued_items(), 0);
        assert!(next_batch(&shared).is_none());
    }

    #[test]
    fn the_demand_counts_items_refused_for_a_full_queue() {
        let shared = Shared::new(
            BatchPolicy {
                max_batch: 2,
                max_queue_delay: Duration::from_secs(10),
            },
            2,
            crate::cli::PadBatches::Off,
        );
        let mut receivers = Vec::new();
        let mut submit = |items: u32| {
            let (job, waiting) = job(items);
            receivers.push(waiting);
            shared.submit(job, 2)
        };
        assert!(submit(2).is_ok());
        assert!(matches!(submit(1), Err(Rejected::Full { .. })));
        // Never servable: not demand.
        assert!(matches!(submit(3), Err(Rejected::TooLarge { .. })));
        assert_eq!(shared.arrivals.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn pads_to_powers_of_two_capped_at_the_max_batch() {
        assert_eq!(padded_size(1, 256), 1);
        assert_eq!(padded_size(3, 256), 4);
        assert_eq!(padded_size(33, 256), 64);
        assert_eq!(padded_size(200, 256), 256);
        assert_eq!(padded_size(90, 100), 100);
        assert_eq!(padded_size(0, 8), 1);
        assert_eq!(padded_shapes(100), vec![1, 2, 4, 8, 16, 32, 64, 100]);
        assert_eq!(padded_shapes(64), vec![1, 2, 4, 8, 16, 32, 64]);
        assert_eq!(padded_shapes(1), vec![1]);
        for items in 1..=100 {
            let p = padded_size(items, 100);
            assert!(
                p >= items && padded_shapes(100).contains(&p),
                "{items} -> {p}"
            );
        }
    }
}
