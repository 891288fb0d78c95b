//! The SR steps: pre-process, run the model tile by tile, blend, post-process.

pub mod gan;

/// Progress of a pipeline stage: `done` of `total` units (tiles).
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    pub stage: &'static str,
    pub done: usize,
    pub total: usize,
}
