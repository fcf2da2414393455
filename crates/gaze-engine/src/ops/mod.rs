//! Differentiable operations with exact gradients.
//!
//! Each op is a candle custom op whose forward runs a kernel of ours and whose backward follows
//! PyTorch's definition, so attributions match the Python peers:
//! ReLU's gradient at 0 is 0; max pooling routes a window's gradient to its first maximum only;
//! pooling takes any kernel, stride and padding; convolutions take any stride, padding, dilation and
//! groups on non-square inputs; and no op computes the gradient of a weight that is not a variable
//! (a constant weight gets `None`, so the gradient store never holds it).
//!
//! The ops: [`conv2d`] (Winograd's minimal filtering for 3×3 stride-1 convolutions, im2col and
//! `gemm` for the others, direct loops for depthwise ones),
//! [`conv2d_relu`] (a convolution and a ReLU fused into one graph node), [`conv2d_add_relu`] (a
//! convolution, a residual sum and a ReLU as one node), [`linear`],
//! [`max_pool2d`], [`avg_pool2d`], [`adaptive_avg_pool2d`], [`upsample_bilinear2d`], [`batch_norm`]
//! (inference mode), [`relu`] with its guided and deconvnet rules, [`batch_norm_relu`] and
//! [`add_relu`] (a batch normalisation or a sum fused with its ReLU), and [`softmax_last_dim`].
//!
//! Kernels run on the host for `f32` and `f64` (the finite-difference tests run in `f64`).
//! On other devices (CUDA) the ops take the device path (`device.rs`): candle's kernels for the
//! device compute the value (cuDNN's convolutions with the `cudnn` feature, cuBLAS's products) and
//! the same gradients are written as candle tensor ops on the device; the few configurations
//! candle's kernels cannot express (a convolution with different strides or dilations along the
//! two axes, a convolution's weight gradient, which no attribution method asks for, an adaptive
//! pooling whose output size does not divide the input's) copy to the host kernels and back.
//! [`set_device_path_on_host`] runs the device path on the host too, which is how it is tested
//! against the host kernels.
//!
//! ## Speed
//! - Matrix products run on OpenBLAS (the default `openblas` feature, when the build finds
//!   `libopenblas`) or on the pure-Rust `gemm` crate, always on one thread per call: each kernel
//!   splits its own work over the threads.
//! - A dense 3×3 convolution with stride 1 (VGG16's, ResNet-50's middle ones) runs as Winograd's
//!   F(4×4, 3×3) on large planes and F(2×2, 3×3) on medium ones, forward and input gradient alike
//!   (Lavin and Gray, CVPR 2016): 4 and 2.25 times fewer multiply-adds; see [`set_winograd`]
//!   (`GAZE_WINOGRAD=0` turns it off) for its rounding.
//! - Any other convolution builds its im2col matrix one tile of output pixels at a time, in a buffer each
//!   thread reuses, so the copy stays in the cache for the multiply; a 1×1 convolution multiplies
//!   its input directly; the input gradient is the transposed weights times the output gradient,
//!   scattered back (col2im) by bands of input rows that no two threads share; a depthwise
//!   convolution runs direct loops. A batch of small planes (under 100 output pixels per image)
//!   puts its images side by side in one product, so the weights are packed once per block of
//!   images instead of once per image.
//! - Max pooling keeps where each window's maximum lies, so its backward pass is a scatter; its
//!   forward pass runs a row of outputs at a time, eight outputs held in vector registers while
//!   every window element passes (a load, a compare and two blends each), each input row split
//!   by the stride's phase first (sixteen values per two permutes at stride 2), so that
//!   neighbouring outputs' elements lie side by side. The ReLU's backward pass is one pass over
//!   the input and the gradient.
//! - The fused convolutions apply their ReLU (and residual) to each block of outputs right after
//!   an im2col job writes it, while it is in cache; outputs that the jobs write in full are not
//!   zeroed first; and the input gradient of a fused convolution and ReLU on a Winograd shape
//!   reads the output gradient through the ReLU's rule as it copies it in.
//! - A linear layer's input gradient for a few images reads only the weight rows whose outputs
//!   have a non-zero gradient (about half behind a ReLU).
//! - The threads: see [`num_threads`] and [`set_num_threads`] (`GAZE_NUM_THREADS`); a binary
//!   calls [`tune_process`] at the start of `main`. The jobs run on a fork-join pool of the ops'
//!   own (`forkjoin.rs`): the calling thread takes jobs too, and the workers spin briefly between
//!   kernels instead of falling asleep after each.

mod conv;
mod device;
mod forkjoin;
mod kernel;
mod linear;
mod matmul;
mod norm;
mod pool;
mod relu;
mod softmax;
mod threads;
mod upsample;
mod winograd;

pub use conv::{conv2d, conv2d_add_relu, conv2d_relu, Conv2dConfig};
pub use device::{device_path_on_host, set_device_path_on_host};
pub use linear::linear;
pub use norm::{batch_norm, batch_norm_relu};
pub use pool::{adaptive_avg_pool2d, avg_pool2d, max_pool2d, Pool2dConfig};
pub use relu::{add_relu, relu, ReluMode};
pub use softmax::softmax_last_dim;
pub use threads::{num_threads, set_num_threads, tune_process, NUM_THREADS_VAR};
pub use upsample::upsample_bilinear2d;
pub use winograd::{set_winograd, winograd_enabled, WINOGRAD_VAR};
