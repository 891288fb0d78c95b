// The page's side of the worker: the same API as the wasm package (Upscaler.load, upscale,
// adjust, cached, evict, capabilities), with inference off the main thread.
import type { Op, Response } from './protocol';

type Progress = (p: any) => void;
interface Call { resolve: (v: any) => void; reject: (e: Error) => void; onProgress?: Progress }

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

  call<T>(op: Op, opts: { onProgress?: Progress; signal?: AbortSignal } = {}, transfer: Transferable[] = []): Promise<T> {
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

export interface LoadOptions { onProgress?: Progress; signal?: AbortSignal; persist?: boolean; backend?: 'auto' | 'webgpu' | 'cpu'; precision?: 'auto' | 'f16' | 'f32' }
export interface UpscaleOptions {
  tile?: number; overlap?: number; lambdaPix?: number; lambdaSem?: number;
  colorFix?: 'adain' | 'wavelet' | 'none'; processSize?: number;
  latentTile?: number; latentOverlap?: number; vaeTile?: number; onProgress?: Progress; signal?: AbortSignal;
}

export class Upscaler {
  private constructor(public readonly info: any) {}

  static async load(manifestUrl: string, opts: LoadOptions = {}): Promise<Upscaler> {
    const { onProgress, signal, ...rest } = opts;
    const url = new URL(manifestUrl, location.href).href;
    return new Upscaler(await channel().call({ op: 'load', url, opts: rest }, { onProgress, signal }));
  }

  upscale(image: ImageData | ImageBitmap, opts: UpscaleOptions = {}): Promise<ImageData> {
    const { onProgress, signal, ...rest } = opts;
    return channel().call({ op: 'upscale', image, opts: rest }, { onProgress, signal });
  }

  adjust(lambdaPix: number, lambdaSem: number): Promise<ImageData> {
    return channel().call({ op: 'adjust', lambdaPix, lambdaSem });
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
