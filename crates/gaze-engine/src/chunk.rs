use candle_core::Tensor;

use crate::{Error, Result};

/// A contiguous range of samples: `start..start + len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chunk {
    pub start: usize,
    pub len: usize,
}

/// Splits `total` samples into chunks of at most `batch`.
///
/// ```
/// use gaze_engine::{chunks, Chunk};
/// let c: Vec<Chunk> = chunks(5, 2).unwrap().collect();
/// assert_eq!(c, [Chunk { start: 0, len: 2 }, Chunk { start: 2, len: 2 }, Chunk { start: 4, len: 1 }]);
/// ```
pub fn chunks(total: usize, batch: usize) -> Result<impl Iterator<Item = Chunk>> {
    if batch == 0 {
        return Err(Error::InvalidOption {
            option: "--batch".into(),
            value: "0".into(),
            expected: "a batch size of at least 1".into(),
        });
    }
    Ok((0..total).step_by(batch).map(move |start| Chunk { start, len: batch.min(total - start) }))
}

impl Chunk {
    /// The rows of `t` (along dimension 0) this chunk covers.
    pub fn of(&self, t: &Tensor) -> Result<Tensor> {
        Ok(t.narrow(0, self.start, self.len)?)
    }
}

/// The largest batch whose samples, at `bytes_per_sample` each, fit in `budget_bytes` (at least 1).
pub fn batch_for_budget(bytes_per_sample: usize, budget_bytes: usize) -> usize {
    (budget_bytes / bytes_per_sample.max(1)).max(1)
}

/// Runs `f` on each chunk of `total` samples and concatenates the results along dimension 0.
pub fn map_chunks<F>(total: usize, batch: usize, mut f: F) -> Result<Tensor>
where
    F: FnMut(Chunk) -> Result<Tensor>,
{
    let parts = chunks(total, batch)?.map(&mut f).collect::<Result<Vec<_>>>()?;
    Ok(Tensor::cat(&parts, 0)?)
}

/// Runs `f` on each chunk of `total` samples and sums the results, holding one chunk at a time.
pub fn sum_chunks<F>(total: usize, batch: usize, mut f: F) -> Result<Option<Tensor>>
where
    F: FnMut(Chunk) -> Result<Tensor>,
{
    let mut acc: Option<Tensor> = None;
    for c in chunks(total, batch)? {
        let part = f(c)?;
        acc = Some(match acc {
            None => part,
            Some(a) => (a + part)?,
        });
    }
    Ok(acc)
}
