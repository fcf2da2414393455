//! Bytes → `gaze_models::load_image_bytes` (the decoder, limits and conversions of `load_image`),
//! then the demo model's preprocessing of whatever decodes.
//! Every input must give an image or an error, never a panic, an abort or a hang.

#![no_main]

use std::path::Path;

use candle_core::Device;
use gaze_models::{load_image_bytes, Preprocess};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(image) = load_image_bytes(data, Path::new("fuzz-input")) {
        let pre = Preprocess::Tf { size: 8 };
        let input = pre.apply(&image, &Device::Cpu).expect("a decoded image preprocesses");
        assert_eq!(input.dims(), &[3, 8, 8]);
    }
});
