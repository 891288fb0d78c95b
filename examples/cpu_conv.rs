//! One 3x3 convolution on the CPU, for measurements outside the tests (docs/cpu.md):
//!
//!   cpu_conv count PATH N    run N convolutions 64→64 on a 128x128 map and nothing else
//!                            (for callgrind: one convolution = the count at N=2 minus N=1)
//!   cpu_conv speed [ROUNDS]  both paths and a large gemm (the CPU's FP32 limit), alternating
//!   cpu_conv error           Winograd's rounding against an f64 direct convolution, beside
//!                            a direct f32 convolution's (docs/cpu.md's table)
//!
//! PATH is `winograd` (src/cpu, map to map: the layout kept between layers) or `burn` (burn's
//! CPU backend: conv2d on NCHW tensors, im2col + gemm).

use std::time::Instant;

use burn::tensor::{Device, Tensor, TensorData, module::conv2d, ops::ConvOptions};
use onestep_sr::cpu::map::Map;
use onestep_sr::cpu::noise;
use onestep_sr::cpu::winograd::{Act, Winograd3x3, direct_reference};

const C: usize = 64;
const H: usize = 128;
const W: usize = 128;

/// A prepared convolution of one path; `run` does one.
enum Conv {
    Winograd { conv: Winograd3x3, src: Map, dst: Map },
    Burn { x: Tensor<4>, w: Tensor<4>, b: Tensor<1> },
}

impl Conv {
    fn new(path: &str) -> Self {
        let (x, w, b) = (noise(C * H * W, 1), noise(C * C * 9, 2), noise(C, 3));
        match path {
            "winograd" => Conv::Winograd {
                conv: Winograd3x3::new(&w, Some(&b), C, C),
                src: Map::from_nchw(&x, C, H, W, 1, 1, 0),
                dst: Map::zeros(H, W, C, 1, 1),
            },
            "burn" => {
                let device = Device::flex();
                Conv::Burn {
                    x: Tensor::from_data(TensorData::new(x, [1, C, H, W]), &device),
                    w: Tensor::from_data(TensorData::new(w, [C, C, 3, 3]), &device),
                    b: Tensor::from_data(TensorData::new(b, [C]), &device),
                }
            }
            other => panic!("unknown path {other}: winograd or burn"),
        }
    }

    fn run(&mut self) {
        match self {
            Conv::Winograd { conv, src, dst } => conv.forward(src, 0, dst, 0, Act::Identity, None),
            Conv::Burn { x, w, b } => {
                let y = conv2d(x.clone(), w.clone(), Some(b.clone()), ConvOptions::new([1, 1], [1, 1], [1, 1], 1));
                std::hint::black_box(y.into_data());
            }
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// GFLOP/s of an n³ f32 gemm on every core: the FP32 limit the convolutions are measured against.
fn gemm_limit(n: usize) -> f64 {
    let (a, b, mut c) = (noise(n * n, 4), noise(n * n, 5), vec![0f32; n * n]);
    let mut run = || unsafe {
        gemm::gemm(n, n, n, c.as_mut_ptr(), n as isize, 1, false, a.as_ptr(), n as isize, 1, b.as_ptr(), n as isize, 1, 0.0, 1.0, false, false, false, gemm::Parallelism::Rayon(0))
    };
    run();
    let t = Instant::now();
    run();
    2.0 * (n * n * n) as f64 / t.elapsed().as_secs_f64() / 1e9
}

/// Max and RMS error of `got` against `want`, relative to `want`'s max and RMS.
fn relative_error(got: &[f32], want: &[f64]) -> (f64, f64) {
    let max = want.iter().fold(0f64, |m, v| m.max(v.abs()));
    let rms = (want.iter().map(|v| v * v).sum::<f64>() / want.len() as f64).sqrt();
    let e: Vec<f64> = got.iter().zip(want).map(|(g, w)| (*g as f64 - w).abs()).collect();
    let e_rms = (e.iter().map(|v| v * v).sum::<f64>() / e.len() as f64).sqrt();
    (e.iter().cloned().fold(0f64, f64::max) / max, e_rms / rms)
}

fn error_table() {
    let hw = 48;
    for (c_in, c_out) in [(64, 32), (192, 64), (64, 64), (3, 64), (64, 3)] {
        let x = noise(c_in * hw * hw, 7);
        let scale = 1.0 / ((9 * c_in) as f32).sqrt();
        let w: Vec<f32> = noise(c_out * c_in * 9, 8).iter().map(|v| v * scale).collect();
        let want = direct_reference(&x, c_in, hw, hw, &w, None, c_out, 1);
        let conv = Winograd3x3::new(&w, None, c_in, c_out);
        let src = Map::from_nchw(&x, c_in, hw, hw, 1, 1, 0);
        let mut dst = Map::zeros(hw, hw, c_out, 1, 1);
        conv.forward(&src, 0, &mut dst, 0, Act::Identity, None);
        let mut direct = vec![0f32; want.len()];
        for o in 0..c_out {
            for y in 0..hw {
                for xo in 0..hw {
                    let mut acc = 0f32;
                    for i in 0..c_in {
                        for (r, s) in (0..9).map(|k| (k / 3, k % 3)) {
                            let (iy, ix) = ((y + r) as isize - 1, (xo + s) as isize - 1);
                            if iy >= 0 && ix >= 0 && (iy as usize) < hw && (ix as usize) < hw {
                                acc += x[(i * hw + iy as usize) * hw + ix as usize] * w[((o * c_in + i) * 3 + r) * 3 + s];
                            }
                        }
                    }
                    direct[(o * hw + y) * hw + xo] = acc;
                }
            }
        }
        let (wm, wr) = relative_error(&dst.to_nchw(0, c_out), &want);
        let (dm, dr) = relative_error(&direct, &want);
        println!("| {c_in} → {c_out} | {wm:.1e} / {wr:.1e} | {dm:.1e} / {dr:.1e} | {:.1} |", wr / dr);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("count") => {
            let mut conv = Conv::new(args.get(1).map_or("winograd", String::as_str));
            let n: usize = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(1);
            for _ in 0..n {
                conv.run();
            }
        }
        Some("speed") => {
            let rounds: usize = args.get(1).and_then(|v| v.parse().ok()).unwrap_or(5);
            let flops = 2.0 * 9.0 * (C * C * H * W) as f64;
            let (mut wino, mut burn) = (Conv::new("winograd"), Conv::new("burn"));
            let (mut tw, mut tb, mut peak) = (vec![], vec![], vec![]);
            wino.run();
            burn.run();
            for _ in 0..rounds {
                let reps = 10;
                let t = Instant::now();
                (0..reps).for_each(|_| wino.run());
                tw.push(t.elapsed().as_secs_f64() / reps as f64);
                let t = Instant::now();
                (0..reps).for_each(|_| burn.run());
                tb.push(t.elapsed().as_secs_f64() / reps as f64);
                peak.push(gemm_limit(1536));
            }
            let (w, b, p) = (median(tw), median(tb), median(peak));
            println!(
                "{{\"conv\": \"3x3 {C}->{C} on {H}x{W}\", \"rounds\": {rounds}, \"threads\": {}, \"winograd_ms\": {:.2}, \"winograd_gflops\": {:.1}, \"burn_ms\": {:.2}, \"burn_gflops\": {:.1}, \"gemm_limit_gflops\": {:.1}, \"speedup\": {:.2}}}",
                rayon::current_num_threads(),
                w * 1e3,
                flops / w / 1e9,
                b * 1e3,
                flops / b / 1e9,
                p,
                b / w
            );
        }
        Some("error") => error_table(),
        _ => eprintln!("usage: cpu_conv count winograd|burn N | cpu_conv speed [ROUNDS] | cpu_conv error"),
    }
}
