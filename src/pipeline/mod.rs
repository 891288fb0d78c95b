//! The SR steps: pre-process, run the model tile by tile, blend, post-process.

pub mod colour_fix;
pub mod gan;
pub mod one_step;
pub mod preprocess;
pub mod sd_upscale;
pub mod valid_net;

/// Progress of a pipeline stage: `done` of `total` units (tiles); inside a unit that takes
/// long, `part` = (parts done, parts) of the unit now running (e.g. RRDB blocks of a tile).
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    pub stage: &'static str,
    pub done: usize,
    pub total: usize,
    pub part: Option<(usize, usize)>,
}

impl Progress {
    pub fn new(stage: &'static str, done: usize, total: usize) -> Self {
        Self { stage, done, total, part: None }
    }
}

/// The host's turn, handed down by the caller: in the browser a future that resolves on the
/// next task, so the worker's queued events (an abort among them) run between tiles.
pub type YieldHook = std::sync::Arc<dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> + Send + Sync>;

/// Stops a run at the next tile or band boundary once set (from another thread, or from the
/// page between tiles in the browser), and gives the host its turn there. Clones share the flag.
#[derive(Clone, Default)]
pub struct Cancel {
    flag: std::sync::Arc<std::sync::atomic::AtomicBool>,
    host: Option<YieldHook>,
}

impl std::fmt::Debug for Cancel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cancel").field("cancelled", &self.is_cancelled()).field("yields", &self.host.is_some()).finish()
    }
}

impl Cancel {
    /// A flag whose checkpoints also await `host` (the browser's next task).
    pub fn with_yield(host: YieldHook) -> Self {
        Self { flag: Default::default(), host: Some(host) }
    }

    pub fn cancel(&self) {
        self.flag.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.flag.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Gives the host its turn (nothing natively), then reports whether the run may go on.
    pub async fn checkpoint(&self) -> Result<(), RunError> {
        if let Some(host) = &self.host {
            host().await;
        }
        self.check()
    }

    pub fn check(&self) -> Result<(), RunError> {
        if self.is_cancelled() { Err(RunError::Cancelled) } else { Ok(()) }
    }
}

impl PartialEq for Cancel {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.flag, &other.flag)
    }
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
