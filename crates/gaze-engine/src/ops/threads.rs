//! The threads the host kernels run on.
//!
//! By default the kernels run on candle's own CPU worker pool, the one its elementwise ops use
//! (sized by `CANDLE_NUM_THREADS`, else `RAYON_NUM_THREADS`, else every core).
//! Sharing it matters on a small machine: candle's workers spin for a while after each op, waiting
//! for the next, and a second pool of ours would compete with them for the same cores; on the
//! shared pool the spinning workers pick up our kernels' work instead.
//!
//! The environment variable `GAZE_NUM_THREADS`, or [`set_num_threads`], asks for another count;
//! when it differs from candle's, the kernels get a rayon pool of their own of that size.
//! A matrix multiply inside a kernel runs on one thread (the kernels split the work themselves),
//! so the count is the number of cores the ops use.

use std::cell::Cell;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use rayon::prelude::*;
use rayon::{ThreadPool, ThreadPoolBuilder};

use crate::{Error, Result};

/// The environment variable that sets the number of threads.
pub const NUM_THREADS_VAR: &str = "GAZE_NUM_THREADS";

/// Where the kernels run.
#[derive(Clone)]
enum Workers {
    /// candle's worker pool, with the calling thread: `threads` in all.
    Candle { threads: usize },
    /// A pool of our own.
    Own(Arc<ThreadPool>),
}

static WORKERS: RwLock<Option<Workers>> = RwLock::new(None);

fn candle_threads() -> usize {
    candle_core::utils::barrier_pool().n_workers() + 1
}

/// The workers for a count of `threads`: candle's pool when it has that many threads.
fn workers_for(threads: Option<usize>) -> Result<Workers> {
    let candle = candle_threads();
    let shared = std::env::var("GAZE_POOL_EXPERIMENT").as_deref() == Ok("candle");
    let n = threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    if shared && n == candle {
        return Ok(Workers::Candle { threads: candle });
    }
    ThreadPoolBuilder::new()
        .num_threads(n)
        .thread_name(|i| format!("gaze-ops-{i}"))
        .build()
        .map(|pool| Workers::Own(Arc::new(pool)))
        .map_err(|e| Error::InvalidOption {
            option: "number of threads".into(),
            value: n.to_string(),
            expected: format!("a count the system can start ({e})"),
        })
}

/// The thread count `GAZE_NUM_THREADS` asks for, if it is set.
fn requested() -> Result<Option<usize>> {
    let invalid = |value: String| Error::InvalidOption {
        option: NUM_THREADS_VAR.into(),
        value,
        expected: "a whole number of threads, at least 1".into(),
    };
    match std::env::var(NUM_THREADS_VAR) {
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(n) if n >= 1 => Ok(Some(n)),
            _ => Err(invalid(v)),
        },
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(v)) => Err(invalid(v.to_string_lossy().into_owned())),
    }
}

fn workers() -> Result<Workers> {
    if let Some(w) = WORKERS.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
        return Ok(w.clone());
    }
    let mut slot = WORKERS.write().unwrap_or_else(|e| e.into_inner());
    if let Some(w) = slot.as_ref() {
        return Ok(w.clone());
    }
    let w = workers_for(requested()?)?;
    *slot = Some(w.clone());
    Ok(w)
}

/// The number of threads the ops use.
///
/// Fails when `GAZE_NUM_THREADS` is set to something that is not a whole number of at least 1.
pub fn num_threads() -> Result<usize> {
    Ok(match workers()? {
        Workers::Candle { threads } => threads,
        Workers::Own(pool) => pool.current_num_threads(),
    })
}

/// Sets the number of threads the ops use from now on (at least 1); it overrides
/// `GAZE_NUM_THREADS`.
///
/// An op already running keeps the threads it started with.
pub fn set_num_threads(threads: usize) -> Result<()> {
    if threads == 0 {
        return Err(Error::InvalidOption {
            option: "number of threads".into(),
            value: "0".into(),
            expected: "at least 1".into(),
        });
    }
    let w = workers_for(Some(threads))?;
    *WORKERS.write().unwrap_or_else(|e| e.into_inner()) = Some(w);
    Ok(())
}

/// The number of threads [`run`] spreads its jobs over.
pub(crate) fn count() -> candle_core::Result<usize> {
    num_threads().map_err(candle_core::Error::wrap)
}

/// Set while a kernel runs its jobs on candle's pool: a kernel called meanwhile from another
/// thread runs its jobs on its own thread instead of queueing for the pool (the cores are busy
/// anyway, and waiting on candle's spinning workers from many threads is slow).
static SHARED_BUSY: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// Set on a thread while it runs a job, so that a kernel nested in a job runs serially.
    static IN_JOB: Cell<bool> = const { Cell::new(false) };
}

/// Clears a flag when dropped, on success, error or panic alike.
struct Reset<'a>(&'a AtomicBool);

impl Drop for Reset<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

fn serial(jobs: usize, job: impl Fn(usize) -> candle_core::Result<()>) -> candle_core::Result<()> {
    (0..jobs).try_for_each(job)
}

/// Below this many elementary steps (multiply-adds, element visits) in all, a kernel runs on the
/// calling thread: waking other threads would cost more than it saves.
const PARALLEL_WORK: usize = 1 << 17;

/// Runs `job(0)`, …, `job(jobs − 1)` on the ops' threads, in any order and in parallel, and
/// returns the first error; after an error the jobs not yet started are skipped.
/// `work` estimates the elementary steps of all the jobs together: small work runs serially.
pub(crate) fn run(
    jobs: usize,
    work: usize,
    job: impl Fn(usize) -> candle_core::Result<()> + Sync,
) -> candle_core::Result<()> {
    if jobs <= 1 || work < PARALLEL_WORK || IN_JOB.with(Cell::get) {
        return serial(jobs, job);
    }
    let marked = |i: usize| {
        let outer = IN_JOB.with(|f| f.replace(true));
        let r = job(i);
        IN_JOB.with(|f| f.set(outer));
        r
    };
    match workers().map_err(candle_core::Error::wrap)? {
        Workers::Candle { threads: 1 } => serial(jobs, job),
        Workers::Candle { .. } => {
            if SHARED_BUSY.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
                return serial(jobs, job);
            }
            let _reset = Reset(&SHARED_BUSY);
            let failed = Mutex::new(None);
            let stop = AtomicBool::new(false);
            candle_core::utils::barrier_pool().execute_chunked(jobs, |range| {
                for i in range {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    if let Err(e) = marked(i) {
                        stop.store(true, Ordering::Relaxed);
                        failed.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(e);
                    }
                }
            });
            match failed.into_inner().unwrap_or_else(|e| e.into_inner()) {
                Some(e) => Err(e),
                None => Ok(()),
            }
        }
        Workers::Own(pool) => pool.install(|| (0..jobs).into_par_iter().try_for_each(marked)),
    }
}

/// Runs `f(i, chunk)` for each chunk `i` of `chunk` elements of `out` (the last may be shorter),
/// in parallel; `work` as for [`run`].
pub(crate) fn chunks_mut<T: Send>(
    out: &mut [T],
    chunk: usize,
    work: usize,
    f: impl Fn(usize, &mut [T]) -> candle_core::Result<()> + Sync,
) -> candle_core::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    let chunk = chunk.max(1);
    let len = out.len();
    let shared = SharedOut::new(out);
    run(len.div_ceil(chunk), work, |i| {
        let lo = i * chunk;
        // SAFETY: chunk `i` is `lo..lo + chunk` (clipped), and chunks do not overlap.
        f(i, unsafe { shared.slice(lo, chunk.min(len - lo))? })
    })
}

/// A vector of `len` elements written chunk by chunk in parallel by `f(i, chunk)`, which must
/// write every element of its chunk; nothing is zeroed first; `work` as for [`run`].
pub(crate) fn collect<T: Send>(
    len: usize,
    chunk: usize,
    work: usize,
    f: impl Fn(usize, &mut [MaybeUninit<T>]) -> candle_core::Result<()> + Sync,
) -> candle_core::Result<Vec<T>> {
    let mut out: Vec<T> = Vec::with_capacity(len);
    chunks_mut(&mut out.spare_capacity_mut()[..len], chunk, work, f)?;
    // SAFETY: the chunks cover all `len` elements and `f` writes every element of its chunk (the
    // callers write each element of an iterator over the chunk); on error we returned above.
    unsafe { out.set_len(len) };
    Ok(out)
}

/// A mutable buffer shared by the threads of a parallel kernel, each writing its own part.
///
/// It keeps the length of the buffer it points into, so every part handed out is checked to lie
/// inside it; that parts given to different threads do not overlap is the caller's promise.
pub struct SharedOut<T> {
    ptr: *mut T,
    len: usize,
}

impl<T> Clone for SharedOut<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for SharedOut<T> {}

// SAFETY: a `SharedOut` is a pointer to a buffer borrowed mutably for the parallel region that
// uses it; the kernels give each thread disjoint elements.
unsafe impl<T: Send> Send for SharedOut<T> {}
unsafe impl<T: Send> Sync for SharedOut<T> {}

impl<T> SharedOut<T> {
    pub fn new(data: &mut [T]) -> Self {
        SharedOut { ptr: data.as_mut_ptr(), len: data.len() }
    }

    /// The elements `offset..offset + len` as a slice.
    ///
    /// # Safety
    /// No other thread may read or write these elements while the slice lives, and the buffer
    /// must outlive it.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn slice(&self, offset: usize, len: usize) -> candle_core::Result<&mut [T]> {
        if offset + len > self.len {
            candle_core::bail!("gaze kernel: a block does not fit its buffer");
        }
        // SAFETY: in bounds (checked above); exclusive and alive by the caller's promise.
        Ok(unsafe { std::slice::from_raw_parts_mut(self.ptr.add(offset), len) })
    }
}
