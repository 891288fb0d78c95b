// The page's side of the worker: the same API as the wasm package (Upscaler.load, upscale,
// adjust, adjustRegion, cached, evict, capabilities), with inference off the main thread.
// Progress arrives enriched: `fraction` of the whole call, a `text` line for a person and
// `etaMs` (progress.ts).
import type { Input, Region } from './protocol';
import { Channel } from './channel';
import { poolSize, runPool, type Workers } from './pool';
import { ProgressTracker, type Progress } from './progress';

export type { Progress, Region, Input, Workers };
export { autoWorkers } from './pool';

type OnProgress = (p: Progress) => void;

// The workers: the first serves every call; with a pool (pool.ts), the others run tiles.
const channels: (Channel | null)[] = [];
const workerUrl = () => new URL('./worker.js', import.meta.url);
function channel(k = 0): Channel {
  return (channels[k] ??= new Channel(workerUrl(), (ch) => { if (channels[k] === ch) channels[k] = null; }));
}

/// Wraps a caller's onProgress with a tracker that adds fraction, text and time left.
function tracked(on: OnProgress | undefined, tracker: ProgressTracker) {
  return on && ((raw: any) => on(tracker.update(raw)));
}

export interface LoadOptions {
  onProgress?: OnProgress; signal?: AbortSignal; persist?: boolean;
  /** "auto" skips software WebGPU adapters (SwiftShader): the CPU path is faster there. */
  backend?: 'auto' | 'webgpu' | 'cpu'; precision?: 'auto' | 'f16' | 'f32'; uploadBlockBytes?: number;
  /** Workers for Real-ESRGAN on the CPU, each with its own copy of the model: a number, or
   *  'auto' (the default: one per core within a memory budget, pool.ts's autoWorkers). The
   *  tiles of one image are spread over them; the result is the same bytes. WebGPU and the
   *  diffusion models use one worker. */
  workers?: Workers;
}
export interface UpscaleOptions {
  /** "png" (default for a File / Blob): a PNG Blob encoded in wasm, the CLI's bytes. */
  output?: 'png' | 'imagedata';
  /** Output scale below the model's, or a target width (Lanczos-3 downscale of the output). */
  scale?: number; width?: number;
  tile?: number; overlap?: number; lambdaPix?: number; lambdaSem?: number;
  colorFix?: 'adain' | 'wavelet' | 'none'; processSize?: number;
  latentTile?: number; latentOverlap?: number; vaeTile?: number; onProgress?: OnProgress; signal?: AbortSignal;
}
export interface AdjustOptions { output?: 'png' | 'imagedata'; onProgress?: OnProgress; signal?: AbortSignal }
export interface ModelInfo {
  modelId: string; architecture: string; scale: number; backend: 'webgpu' | 'cpu'; precision: 'f16' | 'f32';
  fromCache: number; fromNetwork: number; notices: string[];
}

/** The one-step diffusion models (stage shares for progress); the GANs are 'rrdbnet' and 'srvgg'. */
export const isDiffusion = (architecture: string) => architecture === 'pisa-sr' || architecture === 'osediff';

type LoadArgs = Omit<LoadOptions, 'onProgress' | 'signal' | 'workers'>;

export class Upscaler {
  private runs = 0;
  /** The workers this model's upscales use: the pool's size for Real-ESRGAN on the CPU, else 1. */
  readonly workers: number;
  private constructor(public readonly info: ModelInfo, private readonly url: string, private readonly opts: LoadArgs, workers: number) {
    this.workers = info.backend === 'cpu' && !isDiffusion(info.architecture) ? workers : 1;
  }

  static async load(manifestUrl: string, opts: LoadOptions = {}): Promise<Upscaler> {
    const { onProgress, signal, workers, ...rest } = opts;
    const size = poolSize(workers);
    const url = new URL(manifestUrl, location.href).href;
    // Each report names the backend the load chose (auto may pick the CPU).
    const tracker = new ProgressTracker('load');
    const ch = channel();
    const before = ch.owner;
    const token = {};
    ch.owner = token;
    let info: ModelInfo;
    try {
      info = await ch.call({ op: 'load', url, opts: rest }, { onProgress: tracked(onProgress, tracker), signal });
    } catch (e) {
      if (ch.owner === token) ch.owner = before;
      throw e;
    }
    const up = new Upscaler(info, url, rest, size);
    if (ch.owner === token) {
      ch.owner = up;
      ch.ready = Promise.resolve();
    }
    // The pool's other workers read the model from the cache: one after another (the Web Lock
    // per model admits one load at a time), after the first's load stored it (no second
    // download). One that fails leaves the tiles to the others (tried again at the next upscale).
    const others = Array.from({ length: up.workers - 1 }, (_, k) => up.worker(k + 1));
    // Workers beyond this pool would keep another model's copy for nothing.
    for (let k = up.workers; k < channels.length; k++) channels[k]?.end('another model was loaded with fewer workers');
    await Promise.allSettled(others);
    if (signal?.aborted) throw new Error('cancelled');
    return up;
  }

  /** The worker with this model in it. A new worker (after a lost GPU device, a failed
   *  worker or terminate()) or another model loaded since gets it again first, from the
   *  cache: the call then runs on the model it was made on. */
  private worker(k = 0): Promise<Channel> {
    const ch = channel(k);
    if (ch.owner !== this) {
      ch.owner = this;
      // The pool is for the CPU path: its other workers never probe for a GPU.
      ch.ready = ch.call({ op: 'load', url: this.url, opts: k ? { ...this.opts, backend: 'cpu' } : this.opts });
      ch.ready.catch(() => { if (ch.owner === this) ch.owner = null; });
    }
    return ch.ready.then(() => ch);
  }

  /** A File or Blob → a PNG Blob (unless `output: 'imagedata'`); ImageData / ImageBitmap →
   *  ImageData (unless `output: 'png'`). A canvas premultiplies alpha: pass files as Blobs. */
  upscale(image: Blob, opts?: UpscaleOptions & { output?: 'png' }): Promise<Blob>;
  upscale(image: Input, opts?: UpscaleOptions): Promise<Blob | ImageData>;
  upscale(image: Input, opts: UpscaleOptions = {}): Promise<Blob | ImageData> {
    const { onProgress, signal, ...rest } = opts;
    const tracker = new ProgressTracker('run', {
      diffusion: isDiffusion(this.info.architecture),
      compiling: this.info.backend === 'webgpu' && this.runs === 0,
      backend: this.info.backend,
    });
    this.runs++;
    const report = tracked(onProgress, tracker);
    if (this.workers > 1) {
      const others = Array.from({ length: this.workers - 1 }, (_, k) => this.worker(k + 1));
      return this.worker().then((ch) => runPool(ch, others, image, rest, report ?? (() => {}), signal));
    }
    return this.worker().then((ch) => ch.call({ op: 'upscale', image, opts: rest }, { onProgress: report, signal }));
  }

  /** PiSA-SR, after an upscale with lambdaPix / lambdaSem: the whole image at new lambdas
   *  (decoder only), exact. */
  adjust(lambdaPix: number, lambdaSem: number, opts: AdjustOptions = {}): Promise<Blob | ImageData> {
    const { onProgress, signal, ...rest } = opts;
    const tracker = new ProgressTracker('run', { diffusion: true, backend: this.info.backend });
    return this.worker().then((ch) => ch.call({ op: 'adjust', lambdaPix, lambdaSem, opts: rest }, { onProgress: tracked(onProgress, tracker), signal }));
  }

  /** PiSA-SR: a fast, approximate preview of one region of the result (output pixels). */
  adjustRegion(lambdaPix: number, lambdaSem: number, region: Region): Promise<ImageData> {
    return this.worker().then((ch) => ch.call({ op: 'adjustRegion', lambdaPix, lambdaSem, region }));
  }

  static cached(): Promise<any[]> {
    return channel().call({ op: 'cached' });
  }

  static evict(manifestUrl: string): Promise<boolean> {
    return channel().call({ op: 'evict', url: new URL(manifestUrl, location.href).href });
  }

  /** The hard stop: ends the workers (and anything they run); the next call starts a new one. */
  static terminate() {
    for (const ch of channels) ch?.end('terminated');
  }
}

/** An image's size from its header (a File / Blob) or its width and height, before any work:
 *  rejects, with the message an upscale would give, a file that is empty, not PNG / JPEG /
 *  WebP, or over the browser's limit (4 megapixels; docs/browser.md). */
export function inspectImage(image: Input): Promise<{ width: number; height: number; format: string }> {
  // Pixels need not cross to the worker to be measured.
  const probe = image instanceof Blob ? image : { width: image.width, height: image.height };
  return channel().call({ op: 'inspect', image: probe });
}

/** A worker's memory (the first, or the pool's `worker`): the wasm heap's live bytes, the wasm Memory's size (its peak so far)
 *  and, on WebGPU, what burn's allocator holds on the device. */
export function memoryStats(worker = 0): Promise<{ heapBytes: number; wasmBytes: number; gpu?: { allocations: number; bytesInUse: number; bytesReserved: number } }> {
  const ch = worker === 0 ? channel() : channels[worker];
  return ch ? ch.call({ op: 'memory' }) : Promise.reject(new Error(`no worker ${worker} is running`));
}

export function capabilities(opts?: { width?: number; height?: number }): Promise<any> {
  return channel().call({ op: 'capabilities', opts });
}
