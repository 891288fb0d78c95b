//! The SR steps: pre-process, run the model tile by tile, blend, post-process.

pub mod colour_fix;
pub mod gan;
pub mod one_step;
pub mod pil_resize;
pub mod preprocess;
pub mod sd_upscale;

/// Progress of a pipeline stage: `done` of `total` units (tiles).
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    pub stage: &'static str,
    pub done: usize,
    pub total: usize,
}
