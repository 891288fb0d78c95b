//! `--device` and the float-type flags (`--dtype`, `--store-dtype`): their values, and opening
//! the chosen device.

use clap::ValueEnum;

use onestep_sr::device::{self, DeviceChoice};

use crate::util::Result;

#[derive(Clone, Copy, ValueEnum)]
pub enum DeviceArg {
    Gpu,
    Cpu,
    Auto,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum DTypeArg {
    F16,
    F32,
}

pub fn open_device(arg: DeviceArg) -> Result<burn::tensor::Device> {
    let choice = match arg {
        DeviceArg::Gpu => DeviceChoice::Gpu,
        DeviceArg::Cpu => DeviceChoice::Cpu,
        DeviceArg::Auto => DeviceChoice::Auto,
    };
    let (device, notice) = device::open(choice)?;
    if let Some(n) = notice {
        eprintln!("{n}");
    }
    Ok(device)
}
