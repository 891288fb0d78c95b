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

/// Stops a run at the next tile or band boundary once set (from another thread, or from the
/// page between tiles in the browser). Clones share the flag.
#[derive(Clone, Debug, Default)]
pub struct Cancel(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Cancel {
    pub fn cancel(&self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn check(&self) -> Result<(), RunError> {
        if self.is_cancelled() { Err(RunError::Cancelled) } else { Ok(()) }
    }
}

impl PartialEq for Cancel {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

/// Why a diffusion run stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cancelled")]
    Cancelled,
    #[error("the device failed while running the model: {0}")]
    Execution(String),
}

impl From<burn::tensor::ExecutionError> for RunError {
    fn from(e: burn::tensor::ExecutionError) -> Self {
        Self::Execution(format!("{e:?}"))
    }
}
