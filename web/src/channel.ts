// One inference worker seen from the page: its calls by id, their progress, and whose model
// it holds. client.ts keeps one (or a pool of them, pool.ts); the worker is worker.ts.
import type { Op, Response } from './protocol';

interface Call { resolve: (v: any) => void; reject: (e: Error) => void; onProgress?: (p: any) => void }

export class Channel {
  private worker: Worker;
  private next = 1;
  private calls = new Map<number, Call>();
  /** Whose model the worker holds: an Upscaler, a load in flight, or none. */
  owner: object | null = null;
  /** Settles when the owner's model is in the worker. */
  ready: Promise<unknown> = Promise.resolve();

  /** `ended`: told once the worker is gone (the next call then starts a new one). */
  constructor(url: URL, private ended: (ch: Channel) => void) {
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
    this.ended(this);
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
