// The page's side of the worker: the same API as the wasm package (Upscaler.load, upscale,
// adjust, adjustRegion, cached, evict, capabilities), with inference off the main thread.
// Progress arrives enriched: `fraction` of the whole call, a `text` line for a person and
// `etaMs` (progress.ts).
import type { Input, Op, Region, Response } from './protocol';
import { ProgressTracker, type Progress } from './progress';

export type { Progress, Region, Input };

type OnProgress = (p: Progress) => void;
interface Call { resolve: (v: any) => void; reject: (e: Error) => void; onProgress?: (p: any) => void }

class Channel {
  private worker: Worker;
  private next = 1;
  private calls = new Map<number, Call>();
  /** Whose model the worker holds: an Upscaler, a load in flight, or none. */
  owner: object | null = null;
  /** Settles when the owner's model is in the worker. */
  ready: Promise<unknown> = Promise.resolve();

  constructor(url: URL) {
    this.worker = new Worker(url, { type: 'module' });
    this.worker.onmessage = (e: MessageEvent<Response>) => {
      const m = e.data;
      if (m.type === 'dead') {
        this.end(m.message);
        return;
      }
      const call = this.calls.get(m.id);
      if (!call) return;
      if (m.type === 'progress') call.onProgress?.(m.progress);
      else {
        this.calls.delete(m.id);
        if (m.type === 'done') call.resolve(m.value);
        else call.reject(new Error(m.message));
      }
    };
    this.worker.onerror = (e) => this.end(`the worker failed: ${e.message}`);
  }

  /** Ends the worker: every pending call fails with `message`, and the next call starts a
   *  new worker (which loads the caller's model again). */
  end(message: string) {
    this.worker.terminate();
    if (shared === this) shared = null;
    for (const c of this.calls.values()) c.reject(new Error(message));
    this.calls.clear();
  }

  call<T>(op: Op, opts: { onProgress?: (p: any) => void; signal?: AbortSignal } = {}, transfer: Transferable[] = []): Promise<T> {
    const id = this.next++;
    if (opts.signal?.aborted) return Promise.reject(new Error('cancelled'));
    return new Promise<T>((resolve, reject) => {
      const onAbort = () => this.worker.postMessage({ op: 'cancel', target: id, id: 0 });
      // A caller's signal may outlive many calls: each call's listener goes with the call.
      const settled = () => opts.signal?.removeEventListener('abort', onAbort);
      this.calls.set(id, {
        resolve: (v) => { settled(); resolve(v); },
        reject: (e) => { settled(); reject(e); },
        onProgress: opts.onProgress,
      });
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      this.worker.postMessage({ ...op, id }, transfer);
    });
  }
}

let shared: Channel | null = null;
const channel = () => (shared ??= new Channel(new URL('./worker.js', import.meta.url)));

/// Wraps a caller's onProgress with a tracker that adds fraction, text and time left.
function tracked(on: OnProgress | undefined, tracker: ProgressTracker) {
  return on && ((raw: any) => on(tracker.update(raw)));
}

export interface LoadOptions {
  onProgress?: OnProgress; signal?: AbortSignal; persist?: boolean;
  /** "auto" skips software WebGPU adapters (SwiftShader): the CPU path is faster there. */
  backend?: 'auto' | 'webgpu' | 'cpu'; precision?: 'auto' | 'f16' | 'f32'; uploadBlockBytes?: number;
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

type LoadArgs = Omit<LoadOptions, 'onProgress' | 'signal'>;

export class Upscaler {
  private runs = 0;
  private constructor(public readonly info: ModelInfo, private readonly url: string, private readonly opts: LoadArgs) {}

  static async load(manifestUrl: string, opts: LoadOptions = {}): Promise<Upscaler> {
    const { onProgress, signal, ...rest } = opts;
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
    const up = new Upscaler(info, url, rest);
    if (ch.owner === token) {
      ch.owner = up;
      ch.ready = Promise.resolve();
    }
    return up;
  }

  /** The worker with this model in it. A new worker (after a lost GPU device, a failed
   *  worker or terminate()) or another model loaded since gets it again first, from the
   *  cache: the call then runs on the model it was made on. */
  private worker(): Promise<Channel> {
    const ch = channel();
    if (ch.owner !== this) {
      ch.owner = this;
      ch.ready = ch.call({ op: 'load', url: this.url, opts: this.opts });
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
    return this.worker().then((ch) => ch.call({ op: 'upscale', image, opts: rest }, { onProgress: tracked(onProgress, tracker), signal }));
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

  /** The hard stop: ends the worker (and anything it runs); the next call starts a new one. */
  static terminate() {
    shared?.end('terminated');
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

/** The worker's memory: the wasm heap's live bytes, the wasm Memory's size (its peak so far)
 *  and, on WebGPU, what burn's allocator holds on the device. */
export function memoryStats(): Promise<{ heapBytes: number; wasmBytes: number; gpu?: { allocations: number; bytesInUse: number; bytesReserved: number } }> {
  return channel().call({ op: 'memory' });
}

export function capabilities(opts?: { width?: number; height?: number }): Promise<any> {
  return channel().call({ op: 'capabilities', opts });
}
