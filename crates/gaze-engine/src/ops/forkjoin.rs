//! The fork-join pool under [`super::threads`]: `n` threads are the calling thread and `n − 1`
//! workers, and every one of them claims jobs from the same counter until none is left.
//!
//! Between two kernels a worker spins for [`SPIN`] before it sleeps. A sleeping thread takes tens
//! of microseconds to wake (about 100 µs measured on the 2-core virtual machine of
//! `docs/benchmarks.md`), more than many kernels' whole work at batch 1, and a backward pass
//! leaves such gaps between every two ops (candle's bookkeeping runs on the calling thread);
//! since the calling thread works too, a spinning worker never competes with it for a core when
//! there are as many threads as cores. OpenMP's workers, under PyTorch, spin the same way.
//!
//! Several threads may dispatch at once: each dispatch is a [`Batch`] of its own that its
//! dispatcher works through until it is done, so a batch never waits for a worker that went to
//! another.

use std::any::Any;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a worker spins for the next batch before it sleeps.
const SPIN: Duration = Duration::from_micros(200);

/// How long a dispatcher spins for the workers to finish their last jobs before it yields its
/// core between checks (a worker descheduled by other load then gets it back sooner).
const PATIENCE: Duration = Duration::from_micros(50);

/// One dispatch: `jobs` calls of `job`, claimed one at a time.
struct Batch {
    /// The dispatcher's closure, its lifetime erased: it is called only for a claimed job that
    /// has not finished, and the dispatcher waits for every job to finish before the closure
    /// goes out of scope.
    job: *const (dyn Fn(usize) + Sync + 'static),
    jobs: usize,
    next: AtomicUsize,
    remaining: AtomicUsize,
    /// The first panic of a job, resumed on the dispatcher.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
}

// SAFETY: `job` points to a `Sync` closure that outlives every call through it (see `Batch::job`);
// the other fields are thread-safe.
unsafe impl Send for Batch {}
unsafe impl Sync for Batch {}

impl Batch {
    /// Claims and runs jobs until none is left to claim.
    fn work(&self) {
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            if i >= self.jobs {
                return;
            }
            // SAFETY: job `i` is claimed and not finished, so `remaining > 0` and the dispatcher
            // is still waiting with its closure alive.
            let job = unsafe { &*self.job };
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| job(i))) {
                lock(&self.panic).get_or_insert(p);
            }
            self.remaining.fetch_sub(1, Ordering::Release);
        }
    }
}

/// A lock that a panic elsewhere did not make unusable (every value behind these locks is valid
/// at any point).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the dispatchers and the workers share.
struct Shared {
    /// The latest batch, with its generation.
    current: Mutex<(u64, Option<Arc<Batch>>)>,
    /// The latest generation, read by spinning workers without the lock.
    generation: AtomicU64,
    /// Workers asleep on `wake`.
    sleepers: AtomicUsize,
    wake: Condvar,
    exit: AtomicBool,
}

impl Shared {
    /// A worker: waits for each new batch (spinning, then asleep) and works on it.
    fn serve(&self) {
        let mut seen = 0;
        loop {
            let start = Instant::now();
            let mut spins = 0u32;
            while self.generation.load(Ordering::Acquire) == seen {
                if self.exit.load(Ordering::Acquire) {
                    return;
                }
                std::hint::spin_loop();
                spins = spins.wrapping_add(1);
                if spins.is_multiple_of(64) && start.elapsed() >= SPIN {
                    let mut current = lock(&self.current);
                    self.sleepers.fetch_add(1, Ordering::SeqCst);
                    while self.generation.load(Ordering::SeqCst) == seen && !self.exit.load(Ordering::SeqCst) {
                        current = self.wake.wait(current).unwrap_or_else(|e| e.into_inner());
                    }
                    self.sleepers.fetch_sub(1, Ordering::SeqCst);
                }
            }
            if self.exit.load(Ordering::Acquire) {
                return;
            }
            let batch = {
                let current = lock(&self.current);
                seen = current.0;
                current.1.clone()
            };
            if let Some(batch) = batch {
                batch.work();
            }
        }
    }
}

/// A pool of `threads − 1` workers serving [`Pool::run`].
pub(crate) struct Pool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    threads: usize,
}

impl Pool {
    /// A pool for `threads` threads (the caller and `threads − 1` workers named
    /// `{name}-1`, `{name}-2`, …).
    pub(crate) fn new(threads: usize, name: &str) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            current: Mutex::new((0, None)),
            generation: AtomicU64::new(0),
            sleepers: AtomicUsize::new(0),
            wake: Condvar::new(),
            exit: AtomicBool::new(false),
        });
        let mut pool = Pool { shared, workers: Vec::new(), threads: threads.max(1) };
        for i in 1..pool.threads {
            let shared = pool.shared.clone();
            let handle = std::thread::Builder::new().name(format!("{name}-{i}")).spawn(move || {
                super::threads::mark_worker();
                shared.serve()
            })?;
            pool.workers.push(handle);
        }
        Ok(pool)
    }

    /// The threads the pool runs jobs on, the caller's included.
    pub(crate) fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `job(0)`, …, `job(jobs − 1)` on the calling thread and the workers, and returns when
    /// all have finished; a job's panic is resumed here.
    pub(crate) fn run(&self, jobs: usize, job: &(dyn Fn(usize) + Sync)) {
        if jobs == 0 {
            return;
        }
        // SAFETY: only the lifetime is erased; `Batch::work` calls the closure for unfinished
        // jobs only, and this function returns after every job has finished.
        let erased: *const (dyn Fn(usize) + Sync + 'static) = unsafe { std::mem::transmute(job) };
        let batch = Arc::new(Batch {
            job: erased,
            jobs,
            next: AtomicUsize::new(0),
            remaining: AtomicUsize::new(jobs),
            panic: Mutex::new(None),
        });
        if self.threads > 1 {
            {
                let mut current = lock(&self.shared.current);
                current.0 += 1;
                current.1 = Some(batch.clone());
                self.shared.generation.store(current.0, Ordering::SeqCst);
            }
            if self.shared.sleepers.load(Ordering::SeqCst) > 0 {
                self.shared.wake.notify_all();
            }
        }
        batch.work();
        let start = Instant::now();
        let mut spins = 0u32;
        while batch.remaining.load(Ordering::Acquire) != 0 {
            std::hint::spin_loop();
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(64) && start.elapsed() >= PATIENCE {
                std::thread::yield_now();
            }
        }
        let panic = lock(&batch.panic).take();
        if let Some(p) = panic {
            resume_unwind(p);
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.exit.store(true, Ordering::SeqCst);
        {
            let _current = lock(&self.shared.current);
            self.shared.wake.notify_all();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_job_runs_once_from_several_dispatchers_at_once() {
        let pool = Arc::new(Pool::new(3, "test-pool").unwrap());
        let handles: Vec<_> = (0..4)
            .map(|d| {
                let pool = pool.clone();
                std::thread::spawn(move || {
                    for round in 0..200 {
                        let jobs = 1 + (d * 31 + round * 7) % 50;
                        let hits: Vec<AtomicUsize> = (0..jobs).map(|_| AtomicUsize::new(0)).collect();
                        pool.run(jobs, &|i| {
                            hits[i].fetch_add(1, Ordering::Relaxed);
                        });
                        assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1), "dispatcher {d} round {round}");
                        if round % 50 == 0 {
                            // Long enough for the workers to fall asleep.
                            std::thread::sleep(Duration::from_millis(2));
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    }

    #[test]
    fn a_panic_in_a_job_reaches_the_dispatcher_and_the_pool_keeps_working() {
        let pool = Pool::new(2, "test-pool").unwrap();
        let r = catch_unwind(AssertUnwindSafe(|| pool.run(10, &|i| assert!(i != 7, "job {i} failed"))));
        let msg = r.unwrap_err();
        let text = msg.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(text.contains("job 7 failed"), "{text}");
        let done = AtomicUsize::new(0);
        pool.run(10, &|_| {
            done.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(done.load(Ordering::Relaxed), 10);
    }
}
