use std::path::PathBuf;

/// The result type of every gaze library crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong in gaze's libraries.
///
/// Each variant names the bad value and, where there is a finite set, what is accepted, so that the
/// message alone tells a user how to fix the call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A layer name the model does not have.
    #[error("unknown layer `{name}`; valid layers: {}", valid.join(", "))]
    UnknownLayer { name: String, valid: Vec<String> },

    /// A class index at or beyond the number of classes.
    #[error("class index {class} is out of range; the model has {num_classes} classes (0..={})", num_classes.saturating_sub(1))]
    ClassOutOfRange { class: usize, num_classes: usize },

    /// `--top K` with K of zero or more than the class count.
    #[error("top-k of {k} is invalid; the model has {num_classes} classes, so k must be in 1..={num_classes}")]
    TopKOutOfRange { k: usize, num_classes: usize },

    /// Per-image targets whose count does not match the batch.
    #[error("{got} target lists were given for a batch of {batch} images")]
    TargetBatchMismatch { got: usize, batch: usize },

    /// A tensor of the wrong shape.
    #[error("{what}: expected shape {expected}, got {got:?}")]
    Shape { what: String, expected: String, got: Vec<usize> },

    /// A value that is not finite where a finite one is required.
    #[error("{what} contains {count} NaN or infinite values")]
    NonFinite { what: String, count: usize },

    /// A bad option value for a method or a model.
    #[error("invalid value `{value}` for {option}; expected {expected}")]
    InvalidOption { option: String, value: String, expected: String },

    /// A layer that cannot be used the way it was asked (for example as a starting point).
    #[error("layer `{name}` cannot be used here: {reason}")]
    UnsupportedLayer { name: String, reason: String },

    /// A checkpoint that does not fit the architecture.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint { path: PathBuf, reason: String },

    /// A tensor file handed in as a model input (the command line's `--input`, or a tensor file of
    /// background rows) that cannot be read or used.
    #[error("input tensor file {path}: {reason}")]
    InputTensor { path: PathBuf, reason: String },

    /// An image that cannot be read or decoded.
    #[error("image {path}: {reason}")]
    Image { path: PathBuf, reason: String },

    /// A file-system error, with the path it concerns.
    ///
    /// The message names the I/O error too, so that a library user printing only the error sees
    /// why; it is also the [`source`](std::error::Error::source).
    #[error("cannot access {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },

    /// An error from candle's tensor library.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),

    /// Anything else, with its explanation.
    #[error("{0}")]
    Msg(String),
}

impl Error {
    /// An error that carries only a message.
    pub fn msg(text: impl Into<String>) -> Self {
        Error::Msg(text.into())
    }

    /// Whether the error is the user's input (bad option, name, index, file) rather than a failure of
    /// the library; command-line tools exit with 2 for these.
    pub fn is_user_error(&self) -> bool {
        !matches!(self, Error::Candle(_) | Error::Msg(_))
    }
}
