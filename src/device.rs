//! Choosing where the math runs: burn-wgpu (Vulkan / Metal / DX12; WebGPU in the browser)
//! or burn's pure-Rust CPU backend (flex).

use burn::tensor::Device;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum DeviceError {
    #[error("no GPU adapter: {0}")]
    NoGpu(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceChoice {
    Gpu,
    Cpu,
    /// The GPU if an adapter exists, else the CPU.
    Auto,
}

/// burn's CPU backend.
pub fn cpu() -> Device {
    Device::flex()
}

/// The platform's primary graphics API, pinned so a missing driver is an error instead of
/// a silent fall back to OpenGL.
#[cfg(not(target_arch = "wasm32"))]
fn primary_api() -> burn::tensor::wgpu::WgpuBackend {
    use burn::tensor::wgpu::WgpuBackend;
    if cfg!(target_os = "macos") || cfg!(target_os = "ios") {
        WgpuBackend::Metal
    } else if cfg!(windows) {
        WgpuBackend::Dx12
    } else {
        WgpuBackend::Vulkan
    }
}

/// The adapter behind a wgpu device.
#[derive(Clone, Debug)]
pub struct GpuInfo {
    pub name: String,
    /// A software rasteriser (llvmpipe / lavapipe, SwiftShader, WARP): correct but slower
    /// than burn's CPU backend.
    pub software: bool,
}

/// The default GPU through wgpu on the platform's primary API.
#[cfg(not(target_arch = "wasm32"))]
pub fn gpu() -> Result<(Device, GpuInfo), DeviceError> {
    use burn::tensor::wgpu::wgpu::DeviceType;
    let api = primary_api();
    let init = std::panic::catch_unwind(|| Device::wgpu_options().graphics_api(api).init_with_setup());
    match init {
        Ok(Ok((device, setup))) => {
            let info = setup.adapter.get_info();
            Ok((device, GpuInfo { name: info.name, software: info.device_type == DeviceType::Cpu }))
        }
        Ok(Err(e)) => Err(DeviceError::NoGpu(e.to_string())),
        Err(_) => Err(DeviceError::NoGpu(format!("wgpu failed to initialise {api:?}"))),
    }
}

/// Open the chosen device; `Auto` prefers a hardware GPU, else the CPU with a one-line notice.
#[cfg(not(target_arch = "wasm32"))]
pub fn open(choice: DeviceChoice) -> Result<(Device, Option<String>), DeviceError> {
    match choice {
        DeviceChoice::Cpu => Ok((cpu(), None)),
        DeviceChoice::Gpu => Ok((gpu()?.0, None)),
        DeviceChoice::Auto => match gpu() {
            Ok((d, info)) if !info.software => Ok((d, None)),
            Ok((_, info)) => Ok((
                cpu(),
                Some(format!(
                    "notice: the only GPU adapter is the software rasteriser {:?}; running on the CPU backend (faster); --device gpu forces it",
                    info.name
                )),
            )),
            Err(e) => Ok((cpu(), Some(format!("notice: {e}; running on the CPU")))),
        },
    }
}
