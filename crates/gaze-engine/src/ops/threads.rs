//! The threads the host kernels run on.
//!
//! The kernels share one pool of their own (`forkjoin.rs`), of `GAZE_NUM_THREADS` threads when
//! that environment variable is set and of one thread per core otherwise, the calling thread
//! included; [`set_num_threads`] replaces it.
//! A kernel splits its work into jobs and runs them on the pool; a matrix multiply inside a job
//! runs on that job's thread, so the count is the number of cores the ops use.
//! Small work (under about a hundred thousand multiply-adds or element visits) runs on the
//! calling thread, as does a kernel called from inside a job.
//!
//! candle's own elementwise ops run on candle's pool, sized by `CANDLE_NUM_THREADS` (else
//! `RAYON_NUM_THREADS`, else every core).
//! Its workers spin for a while after each op; on a machine with other load a second pool of
//! spinning workers made the kernels slower (measured in `docs/benchmarks.md`), so the ops do not
//! use it.

use std::cell::Cell;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use super::forkjoin::Pool;

use crate::{Error, Result};

/// The environment variable that sets the number of threads.
pub const NUM_THREADS_VAR: &str = "GAZE_NUM_THREADS";

static POOL: RwLock<Option<Arc<Pool>>> = RwLock::new(None);

fn build(threads: usize) -> Result<Arc<Pool>> {
    Pool::new(threads, "gaze-ops").map(Arc::new).map_err(|e| Error::InvalidOption {
        option: "number of threads".into(),
        value: threads.to_string(),
        expected: format!("a count the system can start ({e})"),
    })
}

/// A thread count as `GAZE_NUM_THREADS` gives it.
fn parse_threads(value: &str) -> Result<usize> {
    match value.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(Error::InvalidOption {
            option: NUM_THREADS_VAR.into(),
            value: value.to_string(),
            expected: "a whole number of threads, at least 1".into(),
        }),
    }
}

/// The thread count `GAZE_NUM_THREADS` asks for, or one per core when it is unset.
fn default_threads() -> Result<usize> {
    let invalid = |value: String| Error::InvalidOption {
        option: NUM_THREADS_VAR.into(),
        value,
        expected: "a whole number of threads, at least 1".into(),
    };
    match std::env::var(NUM_THREADS_VAR) {
        Ok(v) => parse_threads(&v),
        Err(std::env::VarError::NotPresent) => Ok(std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)),
        Err(std::env::VarError::NotUnicode(v)) => Err(invalid(v.to_string_lossy().into_owned())),
    }
}

fn pool() -> Result<Arc<Pool>> {
    if let Some(pool) = POOL.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
        return Ok(pool.clone());
    }
    let mut slot = POOL.write().unwrap_or_else(|e| e.into_inner());
    if let Some(pool) = slot.as_ref() {
        return Ok(pool.clone());
    }
    let pool = build(default_threads()?)?;
    *slot = Some(pool.clone());
    Ok(pool)
}

/// The number of threads the ops use.
///
/// Fails when `GAZE_NUM_THREADS` is set to something that is not a whole number of at least 1.
pub fn num_threads() -> Result<usize> {
    Ok(pool()?.threads())
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
    let pool = build(threads)?;
    *POOL.write().unwrap_or_else(|e| e.into_inner()) = Some(pool);
    Ok(())
}

/// The environment variable that sizes candle's own worker pool.
const CANDLE_THREADS_VAR: &str = "CANDLE_NUM_THREADS";

/// Tunes the process for the ops; a binary calls it at the start of `main`, before it starts any
/// thread (it sets an environment variable) and before it runs any candle op.
///
/// - candle's elementwise ops run on the calling thread: `CANDLE_NUM_THREADS` becomes 1 unless it
///   is set. candle's worker pool spins for a while after each op, waiting for the next; in a
///   backward pass, where candle adds up every gradient between two of our ops, its spinning
///   worker competed with the ops' threads for the cores and about doubled the processor time.
/// - glibc's `malloc` keeps freed memory for reuse (it never trims its heap, and makes no
///   separate mappings below 1 GiB): candle keeps every activation of a tracked forward pass
///   alive until the backward pass ends, and handing that memory back to the system after each
///   pass made the next pass fault it back in page by page, a third of a tracked forward pass's
///   time. The process's resident memory stays at its peak, which the peak itself does not
///   change; a trim threshold of 2 GiB still let Xception's batch of 8 (over 2 GiB of
///   activations) give its memory back and fault it in again on every pass.
///
/// Both were measured on a 2-core machine (see `docs/benchmarks.md`); the first does nothing once
/// candle has started its pool, the second only where the C library is glibc.
pub fn tune_process() {
    if std::env::var_os(CANDLE_THREADS_VAR).is_none() {
        std::env::set_var(CANDLE_THREADS_VAR, "1");
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `mallopt` only changes glibc's allocation thresholds; it is called with valid
        // parameters and takes effect for later allocations.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
            // -1: never trim (glibc reads the threshold as an unsigned size).
            libc::mallopt(libc::M_TRIM_THRESHOLD, -1);
        }
    }
}

/// The number of threads [`run`] spreads its jobs over.
pub(crate) fn count() -> candle_core::Result<usize> {
    num_threads().map_err(candle_core::Error::wrap)
}

thread_local! {
    /// Set on a thread while it runs a job, so that a kernel nested in a job runs serially.
    static IN_JOB: Cell<bool> = const { Cell::new(false) };
}

/// Below this many elementary steps (multiply-adds, element visits) in all, a kernel runs on the
/// calling thread: waking other threads would cost more than it saves.
const PARALLEL_WORK: usize = 1 << 17;

/// Runs `job(0)`, …, `job(jobs − 1)` on the ops' threads, in any order and in parallel, and
/// returns the first error.
/// `work` estimates the elementary steps of all the jobs together: small work runs serially.
pub(crate) fn run(
    jobs: usize,
    work: usize,
    job: impl Fn(usize) -> candle_core::Result<()> + Sync,
) -> candle_core::Result<()> {
    if jobs <= 1 || work < PARALLEL_WORK || IN_JOB.with(Cell::get) {
        return (0..jobs).try_for_each(job);
    }
    let pool = pool().map_err(candle_core::Error::wrap)?;
    if pool.threads() <= 1 {
        return (0..jobs).try_for_each(job);
    }
    let failed = AtomicBool::new(false);
    let error = Mutex::new(None);
    pool.run(jobs, &|i| {
        // After a failure the remaining jobs are skipped.
        if failed.load(Ordering::Relaxed) {
            return;
        }
        let outer = IN_JOB.with(|f| f.replace(true));
        let r = job(i);
        IN_JOB.with(|f| f.set(outer));
        if let Err(e) = r {
            failed.store(true, Ordering::Relaxed);
            error.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(e);
        }
    });
    match error.into_inner().unwrap_or_else(|e| e.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Marks the calling thread as one of the pool's workers: the kernels it runs are jobs, and a
/// kernel nested in them runs serially.
pub(super) fn mark_worker() {
    IN_JOB.with(|f| f.set(true));
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

/// A vector of `len` copies of `value`, written by the ops' threads: a kernel's output buffer is
/// otherwise filled by one thread in a serial pass over memory while the others wait.
pub(crate) fn filled<T: Copy + Send + Sync>(len: usize, value: T) -> candle_core::Result<Vec<T>> {
    let parts = 2 * count()?;
    collect(len, len.div_ceil(parts).max(1 << 14), len, |_, chunk| {
        for v in chunk {
            v.write(value);
        }
        Ok(())
    })
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

    /// A buffer whose elements are not initialised yet: a kernel writes each element through
    /// [`SharedOut::slice_uninit`] before [`SharedOut::slice`] hands it out, so that an output
    /// every element of which the kernel writes is not zeroed first.
    pub fn uninit(data: &mut [MaybeUninit<T>]) -> Self {
        SharedOut { ptr: data.as_mut_ptr().cast(), len: data.len() }
    }

    /// The elements `offset..offset + len` as a slice.
    ///
    /// # Safety
    /// No other thread may read or write these elements while the slice lives, the buffer must
    /// outlive it, and the elements must be initialised (always so for a buffer made by
    /// [`SharedOut::new`]).
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn slice(&self, offset: usize, len: usize) -> candle_core::Result<&mut [T]> {
        if offset + len > self.len {
            candle_core::bail!("gaze kernel: a block does not fit its buffer");
        }
        // SAFETY: in bounds (checked above); exclusive, alive and initialised by the caller's
        // promise.
        Ok(unsafe { std::slice::from_raw_parts_mut(self.ptr.add(offset), len) })
    }

    /// The elements `offset..offset + len` as a slice to be written, initialised or not.
    ///
    /// # Safety
    /// No other thread may read or write these elements while the slice lives, and the buffer
    /// must outlive it.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn slice_uninit(&self, offset: usize, len: usize) -> candle_core::Result<&mut [MaybeUninit<T>]> {
        if offset + len > self.len {
            candle_core::bail!("gaze kernel: a block does not fit its buffer");
        }
        // SAFETY: in bounds (checked above); exclusive and alive by the caller's promise; a
        // `MaybeUninit` may hold anything.
        Ok(unsafe { std::slice::from_raw_parts_mut(self.ptr.add(offset).cast(), len) })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn thread_counts_are_checked() {
        assert_eq!(parse_threads(" 3 ").unwrap(), 3);
        for bad in ["0", "-1", "two", ""] {
            let e = parse_threads(bad).unwrap_err().to_string();
            assert!(e.contains(NUM_THREADS_VAR) && e.contains("at least 1"), "{bad}: {e}");
        }
        assert!(set_num_threads(0).is_err());
        assert!(num_threads().unwrap() >= 1);
    }

    /// Every job runs once, in parallel or not, and the first error comes back.
    #[test]
    fn run_runs_every_job_and_returns_an_error() {
        for work in [0, 1 << 30] {
            let done = AtomicUsize::new(0);
            run(100, work, |_| {
                done.fetch_add(1, Ordering::Relaxed);
                Ok(())
            })
            .unwrap();
            assert_eq!(done.load(Ordering::Relaxed), 100);
            let r = run(100, work, |i| if i == 37 { candle_core::bail!("job {i} failed") } else { Ok(()) });
            assert!(r.unwrap_err().to_string().contains("job 37 failed"));
        }
        let mut out = vec![0usize; 1000];
        chunks_mut(&mut out, 64, 1 << 30, |i, chunk| {
            for (j, v) in chunk.iter_mut().enumerate() {
                *v = i * 64 + j;
            }
            Ok(())
        })
        .unwrap();
        assert!(out.iter().enumerate().all(|(i, &v)| i == v));
    }
}
