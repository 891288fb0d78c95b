//! The TypeScript types of the JavaScript API, added to `pkg/onestep_sr.d.ts`: the options,
//! progress reports and results that the exported functions take and give as plain objects.

use wasm_bindgen::prelude::*;

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &str = r#"
export interface LoadProgress {
  /** manifest → (cache | download) per shard → upload (to the device) per shard → build */
  stage: "manifest" | "download" | "cache" | "upload" | "build";
  /** Where the weights go: the backend this load chose. */
  backend: "webgpu" | "cpu";
  shard: number; shards: number; bytesDone: number; bytesTotal: number;
}
export interface LoadOptions {
  onProgress?: (p: LoadProgress) => void;
  signal?: AbortSignal;
  /** Ask the browser to keep the cached weights under storage pressure. */
  persist?: boolean;
  /** "auto" (a hardware WebGPU adapter when there is one, else the CPU: a software adapter
   *  such as SwiftShader is skipped, with a notice), "webgpu" (any adapter) or "cpu". */
  backend?: "auto" | "webgpu" | "cpu";
  /** "auto": f16 compute when the adapter has shader-f16, else f32. */
  precision?: "auto" | "f16" | "f32";
  /** Largest piece of a tensor copied into the wasm heap at a time (default 4 MiB). */
  uploadBlockBytes?: number;
}
/** A run's progress: `done` of `total` units of `stage` ("read", "upscale" tiles, "encode",
 *  "unet" latent tiles, "decode", "colour fix" bands, "write"); inside a long unit, `part`
 *  of `parts` (Real-ESRGAN: body blocks of the tile now running). */
export interface RunProgress { stage: string; done: number; total: number; part?: number; parts?: number }
export interface UpscaleOptions {
  /** "png": a PNG Blob encoded in wasm (the CLI's bytes); "imagedata": an ImageData.
   *  Default: "png" for a File / Blob input, "imagedata" for pixels. */
  output?: "png" | "imagedata";
  /** Output scale below the model's (Lanczos-3 downscale of its output), or a target width
   *  in pixels (height keeps the aspect ratio). Default: the model's own scale. */
  scale?: number; width?: number;
  /** Real-ESRGAN: tile side in input pixels (default 192) and overlap (default 32). */
  tile?: number; overlap?: number;
  /** PiSA-SR adjustable mode (keeps both LoRA predictions for adjust()). */
  lambdaPix?: number; lambdaSem?: number;
  colorFix?: "adain" | "wavelet" | "none";
  /** Diffusion models: inputs with a side under processSize / 4 are enlarged first (default 512). */
  processSize?: number;
  /** Diffusion models: UNet latent tile side and overlap in latents (default: the memory
   *  planner's choice, 96 / 32 when they fit), and the VAE band height in image pixels
   *  (a multiple of 8; the VAE tiling is exact). An out-of-memory run is retried once with
   *  half of each. */
  latentTile?: number; latentOverlap?: number; vaeTile?: number;
  onProgress?: (p: RunProgress) => void;
  signal?: AbortSignal;
}
export interface AdjustOptions { output?: "png" | "imagedata"; onProgress?: (p: RunProgress) => void; signal?: AbortSignal }
export interface Region { x: number; y: number; width: number; height: number }
export interface ModelInfo { modelId: string; architecture: string; scale: number; backend: "webgpu" | "cpu"; precision: "f16" | "f32"; fromCache: number; fromNetwork: number; notices: string[] }
export interface ImageInfo { width: number; height: number; format: "png" | "jpeg" | "webp" | "pixels" }
export interface MemoryStats {
  /** Live bytes in the wasm heap (allocated and not yet freed). */
  heapBytes: number;
  /** The wasm Memory's size: it never shrinks, so it is the peak so far. */
  wasmBytes: number;
  /** burn's allocator on this thread's WebGPU device, once there is one. */
  gpu?: { allocations: number; bytesInUse: number; bytesReserved: number };
}
export interface CachedModel { url: string; modelId: string; architecture: string; bytes: number; totalBytes: number; shards: number; totalShards: number; complete: boolean }
export interface Capabilities {
  webgpu: boolean; backend: "webgpu" | "cpu"; shaderF16: boolean; notice?: string;
  adapter?: { vendor: string; architecture: string; description: string; isFallbackAdapter: boolean; features: string[]; limits: Record<string, number> };
  estimate?: { width: number; height: number; precision: "f16" | "f32"; peakBytes: number; vaeRows: number; latentTile: number; latentOverlap: number; attentionBlock: number; largestBinding: number; parkOnHost: boolean; hostBytes: number } | { error: string };
}
"#;
