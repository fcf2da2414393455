//! Bytes → `gaze_models::input_tensor_from_bytes` (what `--input FILE` reads).
//! Every input must give a finite `[N, 3, H, W]` f32 tensor or an error, never a panic or an abort.

#![no_main]

use std::path::Path;

use candle_core::{DType, Device};
use gaze_models::input_tensor_from_bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(t) = input_tensor_from_bytes(data, Path::new("fuzz-input"), 3, &Device::Cpu) {
        assert_eq!(t.dtype(), DType::F32);
        assert!(matches!(t.dims(), [n, 3, h, w] if *n > 0 && *h > 0 && *w > 0), "{:?}", t.dims());
        let values = t.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("the tensor reads back");
        assert!(values.iter().all(|v| v.is_finite()));
    }
});
