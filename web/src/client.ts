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

  constructor(url: URL) {
    this.worker = new Worker(url, { type: 'module' });
    this.worker.onmessage = (e: MessageEvent<Response>) => {
      const m = e.data;
      const call = this.calls.get(m.id);
      if (!call) return;
      if (m.type === 'progress') call.onProgress?.(m.progress);
      else {
        this.calls.delete(m.id);
        if (m.type === 'done') call.resolve(m.value);
        else call.reject(new Error(m.message));
      }
    };
    this.worker.onerror = (e) => this.failAll(`the worker failed: ${e.message}`);
  }

  failAll(message: string) {
    for (const c of this.calls.values()) c.reject(new Error(message));
    this.calls.clear();
  }

  call<T>(op: Op, opts: { onProgress?: (p: any) => void; signal?: AbortSignal } = {}, transfer: Transferable[] = []): Promise<T> {
    const id = this.next++;
    if (opts.signal?.aborted) return Promise.reject(new Error('cancelled'));
    return new Promise<T>((resolve, reject) => {
      this.calls.set(id, { resolve, reject, onProgress: opts.onProgress });
      opts.signal?.addEventListener('abort', () => this.worker.postMessage({ op: 'cancel', target: id, id: 0 }), { once: true });
      this.worker.postMessage({ ...op, id }, transfer);
    });
  }

  terminate() {
    this.worker.terminate();
    this.failAll('terminated');
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

export class Upscaler {
  private runs = 0;
  private constructor(public readonly info: ModelInfo) {}

  static async load(manifestUrl: string, opts: LoadOptions = {}): Promise<Upscaler> {
    const { onProgress, signal, ...rest } = opts;
    const url = new URL(manifestUrl, location.href).href;
    // Each report names the backend the load chose (auto may pick the CPU).
    const tracker = new ProgressTracker('load');
    return new Upscaler(await channel().call({ op: 'load', url, opts: rest }, { onProgress: tracked(onProgress, tracker), signal }));
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
    return channel().call({ op: 'upscale', image, opts: rest }, { onProgress: tracked(onProgress, tracker), signal });
  }

  /** PiSA-SR, after an upscale with lambdaPix / lambdaSem: the whole image at new lambdas
   *  (decoder only), exact. */
  adjust(lambdaPix: number, lambdaSem: number, opts: AdjustOptions = {}): Promise<Blob | ImageData> {
    const { onProgress, signal, ...rest } = opts;
    const tracker = new ProgressTracker('run', { diffusion: true, backend: this.info.backend });
    return channel().call({ op: 'adjust', lambdaPix, lambdaSem, opts: rest }, { onProgress: tracked(onProgress, tracker), signal });
  }

  /** PiSA-SR: a fast, approximate preview of one region of the result (output pixels). */
  adjustRegion(lambdaPix: number, lambdaSem: number, region: Region): Promise<ImageData> {
    return channel().call({ op: 'adjustRegion', lambdaPix, lambdaSem, region });
  }

  static cached(): Promise<any[]> {
    return channel().call({ op: 'cached' });
  }

  static evict(manifestUrl: string): Promise<boolean> {
    return channel().call({ op: 'evict', url: new URL(manifestUrl, location.href).href });
  }

  /** The hard stop: ends the worker (and anything it runs); the next call starts a new one. */
  static terminate() {
    shared?.terminate();
    shared = null;
  }
}

export function capabilities(opts?: { width?: number; height?: number }): Promise<any> {
  return channel().call({ op: 'capabilities', opts });
}
