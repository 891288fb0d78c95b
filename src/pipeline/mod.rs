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

/// Gives the host a turn between tiles: in the browser the worker's queued events (an abort
/// among them) run before the next tile. Nothing to do natively.
pub(crate) async fn yield_to_host() {
    #[cfg(target_arch = "wasm32")]
    crate::web::glue::next_task().await;
}

/// Why a run stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cancelled")]
    Cancelled,
    /// The device ran out of memory: smaller tiles may fit.
    #[error("the GPU ran out of memory: {0}; try a smaller tile or a smaller image")]
    OutOfMemory(String),
    /// The device is gone (driver reset, tab in the background too long, a kernel fault):
    /// every later call on it fails.
    #[error("the GPU device was lost: {0}; reload the page (or restart the program) to start a new one")]
    DeviceLost(String),
    #[error("the device failed while running the model: {0}")]
    Execution(String),
}

impl From<burn::tensor::ExecutionError> for RunError {
    fn from(e: burn::tensor::ExecutionError) -> Self {
        use burn::tensor::ExecutionError as E;
        match e {
            E::DevicePoisoned { reason } => Self::DeviceLost(reason),
            // burn reports allocation failures as text only.
            e if e.to_string().to_ascii_lowercase().replace(['-', '_'], " ").contains("out of memory")
                || e.to_string().contains("OutOfMemory") =>
            {
                Self::OutOfMemory(e.to_string().lines().last().unwrap_or_default().trim().to_string())
            }
            e => Self::Execution(format!("{e:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RunError;
    use burn::tensor::ExecutionError;

    #[test]
    fn device_errors_are_told_apart() {
        let lost = RunError::from(ExecutionError::device_poisoned("VK_ERROR_DEVICE_LOST"));
        assert!(matches!(lost, RunError::DeviceLost(_)), "{lost:?}");
        assert!(lost.to_string().contains("reload the page"));
        let oom = RunError::from(ExecutionError::with_context("allocation failed\nOut of memory: 268435456 bytes"));
        assert!(matches!(oom, RunError::OutOfMemory(_)), "{oom:?}");
        assert!(oom.to_string().contains("Out of memory: 268435456 bytes; try a smaller tile"), "{oom}");
        let other = RunError::from(ExecutionError::with_context("shader failed to compile"));
        assert!(matches!(other, RunError::Execution(_)), "{other:?}");
    }
}
