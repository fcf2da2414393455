//! # gaze-models
