//! Differentiable operations with exact gradients.
//!
//! Each op is a candle custom op whose forward runs a kernel of ours and whose backward follows
//! PyTorch's definition, so attributions match the Python peers:
//! ReLU's gradient at 0 is 0; max pooling routes a window's gradient to its first maximum only;
//! pooling takes any kernel, stride and padding; convolutions take any stride, padding, dilation and
//! groups on non-square inputs; and no op computes the gradient of a weight that is not a variable
//! (a constant weight gets `None`, so the gradient store never holds it).
//!
//! The ops: [`conv2d`] (im2col and `gemm`, or direct loops for depthwise convolutions), [`linear`],
//! [`max_pool2d`], [`avg_pool2d`], [`adaptive_avg_pool2d`], [`upsample_bilinear2d`], [`batch_norm`]
//! (inference mode), [`relu`] with its guided and deconvnet rules, and [`softmax_last_dim`].
//!
//! Kernels run on the host for `f32` and `f64` (the finite-difference tests run in `f64`). On other
//! devices the op copies its operands to the host and the result back: correct everywhere, fast on
//! the CPU.

mod conv;
mod kernel;
mod linear;
mod matmul;
mod norm;
mod pool;
mod relu;
mod softmax;
mod upsample;

pub use conv::{conv2d, Conv2dConfig};
pub use linear::linear;
pub use norm::batch_norm;
pub use pool::{adaptive_avg_pool2d, avg_pool2d, max_pool2d, Pool2dConfig};
pub use relu::{relu, ReluMode};
pub use softmax::softmax_last_dim;
pub use upsample::upsample_bilinear2d;
