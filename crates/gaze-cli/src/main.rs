//! # gaze
fn main() {}
