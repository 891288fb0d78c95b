//! One full-size UNet pass on the CPU, for profiling outside the tests (docs/cpu.md):
//!
//!   sd_unet MODEL [RUNS]   load MODEL (an `onestep convert sd` folder) on burn's CPU backend and
//!                          time RUNS noise predictions on a seeded 64x64 latent (512x512 image)
//!
//! `perf record -g` around it shows where the UNet's time goes without the VAE's.

use std::time::Instant;

use burn::tensor::{Tensor, TensorData};
use onestep_sr::upscaler::Upscaler;

fn main() {
    onestep_sr::cpu::heap::keep_freed_memory();
    let mut args = std::env::args().skip(1);
    let model = std::path::PathBuf::from(args.next().expect("usage: sd_unet MODEL [RUNS]"));
    let runs: usize = args.next().map_or(1, |r| r.parse().expect("RUNS"));
    let device = onestep_sr::device::cpu();
    let t = Instant::now();
    let Ok(Upscaler::Sd(up)) = Upscaler::load(&model, &device, &mut |_| {}) else { panic!("{}: not a diffusion model", model.display()) };
    eprintln!("load {:.1} s", t.elapsed().as_secs_f64());
    let values = onestep_sr::pipeline::one_step::gaussian(7, 4 * 64 * 64);
    let z = Tensor::<4>::from_data(TensorData::new(values, [1, 4, 64, 64]), &device);
    for _ in 0..runs {
        let t = Instant::now();
        let eps = up.model.eps(z.clone(), true);
        let _ = eps.sum().into_data();
        println!("unet {:.2} s", t.elapsed().as_secs_f64());
    }
}
