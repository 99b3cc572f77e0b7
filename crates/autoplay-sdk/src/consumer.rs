//! The consumer side of both clients, written once: popping the queue, handing
//! payloads to the callbacks, the per-session worker lanes with `workers(n)`, the
//! drain on stop, `stop_now`, and the warning for what a shutdown discards.
//!
//! The loops are `async` and generic over a [`Driver`]: the async client awaits
//! them on tokio with tasks as workers ([`Tasks`]); the blocking client runs the very
//! same loops with [`block_on`] on its own threads ([`Threads`]), whose queue
//! operations are the blocking ones (condvars, no runtime), so each of its futures
//! completes on its first poll.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use crate::client::{ConsumerMark, StopHandle};
use crate::config::{ClientConfig, OverflowPolicy};
use crate::dispatch::{Queued, Weighed, worker_index};
use crate::error::Error;
use crate::models::Event;
use crate::queue::{Batch, EventQueue, Popped, Pushed, Weigh};

/// Events a worker's lane holds when `workers > 1`: few, so events wait in the
/// main queue, where the overflow policy applies.
const LANE_SIZE: usize = 16;

/// The share of `max_queue_bytes` all lanes together may hold (1/8), so the lanes
/// add at most that to the queue's budget (or one event each, whatever its size).
const LANES_BYTES_SHARE: usize = 8;

/// Spent data buffers a consumer collects before handing them back to the reader
/// in one lock.
const SPENT_BATCH: usize = 32;

/// Runs the callbacks for one payload.
pub(crate) trait Handler: Clone + Send + Sync + 'static {
    /// Handles one payload; a panicking callback is contained here.
    fn handle(&self, event: Event) -> impl Future<Output = ()> + Send + '_;
}

/// How a client waits and runs its workers: tasks on tokio, or threads.
pub(crate) trait Driver: Send + Sync + 'static {
    /// A running worker, which gives back how many events it discarded.
    type Worker: Send;

    /// Pops from `queue` (see [`EventQueue::pop`]).
    fn pop<'a, T: Weigh + Send + 'static>(
        queue: &'a EventQueue<T>,
        batch: &'a mut Batch<T>,
        drain_timeout: Duration,
    ) -> impl Future<Output = Popped<T>> + Send + 'a;

    /// Pushes into a worker's lane, waiting for room.
    fn push(
        lane: &EventQueue<Weighed>,
        item: Weighed,
    ) -> impl Future<Output = Pushed<Weighed>> + Send;

    /// Starts worker `index` of the client at `client` (its identity).
    fn spawn(
        index: usize,
        client: usize,
        work: impl Future<Output = usize> + Send + 'static,
    ) -> std::io::Result<Self::Worker>;

    /// Waits for a worker to end; how many events it discarded (0 if it panicked).
    fn join(worker: Self::Worker) -> impl Future<Output = usize> + Send;
}

/// The async client's driver: workers are tokio tasks, aborted if the consumer is
/// dropped (a dropped `run` future).
pub(crate) struct Tasks;

/// A worker task, aborted when dropped before it ends.
pub(crate) struct TaskWorker(tokio::task::JoinHandle<usize>);

impl Drop for TaskWorker {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Driver for Tasks {
    type Worker = TaskWorker;

    fn pop<'a, T: Weigh + Send + 'static>(
        queue: &'a EventQueue<T>,
        batch: &'a mut Batch<T>,
        drain_timeout: Duration,
    ) -> impl Future<Output = Popped<T>> + Send + 'a {
        queue.pop(batch, drain_timeout)
    }

    fn push(
        lane: &EventQueue<Weighed>,
        item: Weighed,
    ) -> impl Future<Output = Pushed<Weighed>> + Send {
        lane.push(item)
    }

    fn spawn(
        _index: usize,
        _client: usize,
        work: impl Future<Output = usize> + Send + 'static,
    ) -> std::io::Result<TaskWorker> {
        Ok(TaskWorker(tokio::spawn(work)))
    }

    async fn join(mut worker: TaskWorker) -> usize {
        (&mut worker.0).await.unwrap_or(0)
    }
}

/// The blocking client's driver: workers are threads, and every wait blocks the
/// calling thread.
pub(crate) struct Threads;

impl Driver for Threads {
    type Worker = std::thread::JoinHandle<usize>;

    fn pop<'a, T: Weigh + Send + 'static>(
        queue: &'a EventQueue<T>,
        batch: &'a mut Batch<T>,
        drain_timeout: Duration,
    ) -> impl Future<Output = Popped<T>> + Send + 'a {
        std::future::ready(queue.pop_blocking(batch, drain_timeout))
    }

    fn push(
        lane: &EventQueue<Weighed>,
        item: Weighed,
    ) -> impl Future<Output = Pushed<Weighed>> + Send {
        std::future::ready(lane.push_blocking(item))
    }

    fn spawn(
        index: usize,
        client: usize,
        work: impl Future<Output = usize> + Send + 'static,
    ) -> std::io::Result<Self::Worker> {
        std::thread::Builder::new()
            .name(format!("autoplay-worker-{index}"))
            .spawn(move || {
                let _mark = ConsumerMark::set(client);
                block_on(work)
            })
    }

    fn join(worker: Self::Worker) -> impl Future<Output = usize> + Send {
        std::future::ready(worker.join().unwrap_or(0))
    }
}

/// Runs a future to its end on this thread, parking while it waits.
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::thread::park();
    }
}

/// Hands every queued payload to the callbacks until the queue is closed and
/// drained (or the drain timeout passes, or `stop_now`), on this task or thread
/// with one worker, through per-session lanes with more; then warns about what was
/// discarded. Fails only if a worker cannot be started.
pub(crate) async fn consume<D: Driver, H: Handler>(
    queue: &EventQueue<Queued>,
    config: &ClientConfig,
    handler: &H,
    stop: &StopHandle,
    client: usize,
) -> Result<(), Error> {
    let mut batch = Batch::default();
    let unhandled = if config.workers == 1 {
        let mut unhandled = 0;
        let mut spent = Vec::with_capacity(SPENT_BATCH);
        while let Popped::Item(queued) = D::pop(queue, &mut batch, config.drain_timeout).await {
            if stop.discarding() {
                unhandled = 1;
                break;
            }
            if let Some(payload) = queued.into_payload_keeping(&mut spent) {
                handler.handle(payload).await;
            }
            if spent.len() >= SPENT_BATCH {
                queue.give_back(&mut spent);
            }
        }
        unhandled
    } else {
        route::<D, H>(queue, &mut batch, config, handler, stop, client).await?
    };
    warn_discarded(
        unhandled + queue.take_all(batch).len(),
        stop,
        "events still queued",
    );
    Ok(())
}

/// Decodes on this task or thread and hands each payload to the worker owning its
/// session. Returns how many events it popped but did not hand on (after a stop-now).
async fn route<D: Driver, H: Handler>(
    queue: &EventQueue<Queued>,
    batch: &mut Batch<Queued>,
    config: &ClientConfig,
    handler: &H,
    stop: &StopHandle,
    client: usize,
) -> Result<usize, Error> {
    let lane_bytes = (config.max_queue_bytes / LANES_BYTES_SHARE / config.workers).max(1);
    let mut lanes = Vec::with_capacity(config.workers);
    let mut workers = Vec::with_capacity(config.workers);
    for index in 0..config.workers {
        let lane = Arc::new(EventQueue::<Weighed>::with_limits(
            LANE_SIZE,
            lane_bytes,
            OverflowPolicy::Block,
            Duration::ZERO,
        ));
        let work = work::<D, H>(
            lane.clone(),
            handler.clone(),
            config.drain_timeout,
            stop.clone(),
        );
        match D::spawn(index, client, work) {
            Ok(worker) => workers.push(worker),
            Err(e) => {
                queue.close();
                lanes
                    .iter()
                    .for_each(|l: &Arc<EventQueue<Weighed>>| l.close());
                return Err(Error::Io(e));
            }
        }
        lanes.push(lane);
    }
    let mut unhandled = 0;
    let mut spent = Vec::with_capacity(SPENT_BATCH);
    while let Popped::Item(queued) = D::pop(queue, batch, config.drain_timeout).await {
        if stop.discarding() {
            unhandled = 1;
            break;
        }
        let item = queued.into_weighed(&mut spent);
        if spent.len() >= SPENT_BATCH {
            queue.give_back(&mut spent);
        }
        if let Some(item) = item {
            let lane = &lanes[worker_index(&item.0, lanes.len())];
            // A lane its worker closed after a stop-now takes nothing more.
            if let Pushed::Dropped(_) = D::push(lane, item).await {
                unhandled += 1;
            }
        }
    }
    lanes.iter().for_each(|lane| lane.close());
    let mut discarded = 0;
    for worker in workers {
        discarded += D::join(worker).await;
    }
    warn_discarded(discarded, stop, "events waiting for a worker");
    Ok(unhandled)
}

/// One worker: handles its lane until it is closed and drained. Returns how many
/// events it discarded.
async fn work<D: Driver, H: Handler>(
    lane: Arc<EventQueue<Weighed>>,
    handler: H,
    drain_timeout: Duration,
    stop: StopHandle,
) -> usize {
    let mut batch = Batch::default();
    let mut unhandled = 0;
    while let Popped::Item(Weighed(event, _)) = D::pop(&lane, &mut batch, drain_timeout).await {
        if stop.discarding() {
            // Closing first lets a router waiting on this full lane go on.
            lane.close();
            unhandled = 1;
            break;
        }
        handler.handle(event).await;
    }
    unhandled + lane.take_all(batch).len()
}

/// Logs, once per run, what a stop or the drain timeout left unhandled.
pub(crate) fn warn_discarded(discarded: usize, stop: &StopHandle, what: &str) {
    if discarded == 0 {
        return;
    }
    if stop.discarding() {
        tracing::warn!(discarded, "stopped without draining; {what} were discarded");
    } else {
        tracing::warn!(discarded, "the drain timeout passed; {what} were discarded");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_on_waits_for_a_wake_from_another_thread() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            tx.send(7).unwrap();
        });
        assert_eq!(block_on(rx).unwrap(), 7);
        sender.join().unwrap();
    }
}
