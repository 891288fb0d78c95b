// One line for a person, a fraction of the whole call and the time left, from the raw
// progress the wasm package reports (load: per shard; run: per stage, tile and step of a tile).
// The line always says what is happening now: the pipeline reports each stage when it
// starts (done 0) and after each unit, so "tile 3 of 6" means tile 3 is running.

export interface RawProgress {
  stage: string;
  done?: number; total?: number; part?: number; parts?: number;
  shard?: number; shards?: number; bytesDone?: number; bytesTotal?: number;
  /** A pool's run (pool.ts): the tiles running at once; `part` of `parts` sums them. */
  running?: number;
  /** Load progress: the backend the load chose. */
  backend?: string;
}

export interface Progress extends RawProgress {
  done: number; total: number;
  /** 0..1 of the whole call. */
  fraction: number;
  /** What is happening now, e.g. "Upscaling: tile 2 of 6 (step 12 of 25), about 40 s left". */
  text: string;
  /** Estimated milliseconds left, once there is enough to go on. */
  etaMs?: number;
}

const mb = (b: number) => (b / 1e6).toFixed(1);

/// "about 14 s left" / "about 3 min left".
export function formatEta(ms: number): string {
  const s = Math.max(1, Math.round(ms / 1000));
  return s < 90 ? `about ${s} s left` : `about ${Math.round(s / 60)} min left`;
}

// Rough shares of a diffusion run's time per stage (the UNet dominates).
const SD_SHARES: Record<string, [number, number]> = {
  read: [0, 0.01], encode: [0.01, 0.15], unet: [0.15, 0.75], decode: [0.75, 0.77], 'colour fix': [0.77, 0.98], write: [0.98, 1],
};
const GAN_SHARES: Record<string, [number, number]> = { read: [0, 0.01], upscale: [0.01, 0.97], write: [0.97, 1] };

export class ProgressTracker {
  private start = 0;
  private last: Progress | null = null;

  /**
   * `kind`: a load or a run; `diffusion`: the model's family (stage shares); `compiling`:
   * a first run on WebGPU, whose first tile also compiles the shaders.
   */
  constructor(private kind: 'load' | 'run', private opts: { diffusion?: boolean; compiling?: boolean; backend?: string } = {}) {}

  update(raw: RawProgress): Progress {
    const now = performance.now();
    if (!this.start) this.start = now;
    const p = this.kind === 'load' ? this.load(raw) : this.run(raw);
    const elapsed = now - this.start;
    // Time left from the pace so far: only once a little is done, and never for a first
    // WebGPU tile (shader compilation would make it meaningless).
    if (p.fraction > 0.02 && p.fraction < 1 && elapsed > 1500 && !(this.opts.compiling && raw.stage === 'upscale' && (raw.done ?? 0) === 0)) {
      p.etaMs = (elapsed * (1 - p.fraction)) / p.fraction;
      p.text += `, ${formatEta(p.etaMs)}`;
    }
    this.last = p;
    return p;
  }

  get current(): Progress | null {
    return this.last;
  }

  private load(r: RawProgress): Progress {
    const shard = r.shard ?? 0, shards = r.shards ?? 0;
    const fraction = r.bytesTotal ? Math.min(1, (r.bytesDone ?? 0) / r.bytesTotal) : 0;
    const base = { ...r, done: shard, total: shards, fraction };
    switch (r.stage) {
      case 'manifest': return { ...base, fraction: 0, text: 'Loading the model: reading its manifest' };
      case 'download': return { ...base, text: `Downloading the model: ${mb(r.bytesDone ?? 0)} of ${mb(r.bytesTotal ?? 0)} MB (shard ${shard} of ${shards})` };
      case 'cache': return { ...base, text: `Reading the model from this device: shard ${shard} of ${shards}` };
      case 'upload': return { ...base, text: (r.backend ?? this.opts.backend) === 'webgpu' ? `Uploading the model to the GPU: shard ${shard} of ${shards}` : `Preparing the model: shard ${shard} of ${shards}` };
      case 'build': return { ...base, fraction: 1, text: 'Preparing the model' };
      default: return { ...base, text: `Loading the model: ${r.stage}` };
    }
  }

  private run(r: RawProgress): Progress {
    const done = r.done ?? 0, total = r.total ?? 0;
    const shares = this.opts.diffusion ? SD_SHARES : GAN_SHARES;
    const [a, b] = shares[r.stage] ?? [0, 0];
    const within = total ? Math.min(1, (done + (r.parts ? (r.part ?? 0) / r.parts : 0)) / total) : 0;
    const fraction = a + (b - a) * within;
    const unit = Math.min(done + 1, total);
    const base = { ...r, done, total, fraction };
    switch (r.stage) {
      case 'read': return { ...base, text: 'Reading the image' };
      case 'upscale': {
        const compiling = this.opts.compiling && done === 0;
        if ((r.running ?? 0) > 1) return { ...base, text: `Upscaling: ${done} of ${total} tiles done, ${r.running} at once` };
        const part = r.parts ? ` (step ${r.part} of ${r.parts})` : '';
        return { ...base, text: `${compiling ? 'Compiling GPU shaders and upscaling' : 'Upscaling'}: tile ${unit} of ${total}${part}` };
      }
      case 'encode': return { ...base, text: done ? 'Encoded the image (VAE)' : 'Encoding the image (VAE encoder)' };
      case 'unet': return { ...base, text: done >= total ? 'Denoising done (UNet)' : `Denoising (UNet): latent tile ${unit} of ${total}` };
      case 'decode': return { ...base, text: 'Decoding (VAE decoder)' };
      case 'colour fix': return { ...base, text: done >= total ? 'Colour fix done' : `Decoding and colour fix: band ${unit} of ${total}` };
      case 'write': return { ...base, text: 'Writing the PNG' };
      default: return { ...base, text: `${r.stage}: ${done} of ${total}` };
    }
  }
}
