// What the page and the element share around the worker client: one loaded model at a time
// (the worker holds one), progress as one line + a fraction, and a Cancel that always works:
// the run is asked to stop between tiles, and if it has not stopped within a moment the
// worker is ended (Upscaler.terminate) and the model is read again from IndexedDB next time.
import { Upscaler, type Progress as ClientProgress } from './client';
import type { CatalogEntry } from './catalog';

export interface Progress {
  stage: string;
  done: number;
  total: number;
  /** 0..1 of the whole call. */
  fraction: number;
  /** One line for a person, as the engine wrote it (with the time left when it is known). */
  text: string;
  /** Seconds left (progress.ts's estimate; null until it means something). */
  eta: number | null;
}

export type OnProgress = (p: Progress) => void;

/** How long a cancelled run may take to reach its next check before the worker is ended. */
export const HARD_CANCEL_MS = 1500;

/** The worker client's progress (progress.ts: fraction, text, etaMs) in the page's shape. */
export function progressReporter(onProgress: OnProgress | undefined): (p: ClientProgress) => void {
  return (p) => onProgress?.({
    stage: p.stage, done: p.done, total: p.total, fraction: p.fraction, text: p.text,
    eta: p.etaMs === undefined ? null : p.etaMs / 1000,
  });
}

export function cancelled(): Error {
  const e = new Error('cancelled');
  e.name = 'AbortError';
  return e;
}

export const isCancel = (e: unknown) => e instanceof Error && (e.message === 'cancelled' || e.name === 'AbortError');

export class Session {
  private current: { url: string; up: Promise<Upscaler> } | null = null;
  private busy = false;

  get loadedUrl() { return this.current?.url ?? null; }

  /** The model for `entry`, loaded once (a different one replaces it in the worker). */
  model(entry: CatalogEntry, opts: { onProgress?: OnProgress; signal?: AbortSignal; persist?: boolean } = {}): Promise<Upscaler> {
    if (this.current?.url === entry.manifest) return this.current.up;
    const up = Upscaler.load(entry.manifest, {
      onProgress: progressReporter(opts.onProgress),
      signal: opts.signal,
      persist: opts.persist,
      // Every core on the CPU path (Real-ESRGAN): one worker per core within a memory budget.
      workers: 'auto',
    });
    const cur = { url: entry.manifest, up };
    this.current = cur;
    up.catch(() => { if (this.current === cur) this.current = null; });
    return up;
  }

  /** Forget the loaded model (after the worker was ended). */
  reset() { this.current = null; }

  /**
   * Runs `fn` with the model for `entry`; a Cancel (the signal) ends it at once: the engine is
   * asked to stop at its next check, and after HARD_CANCEL_MS the worker is ended.
   */
  async run<T>(entry: CatalogEntry, signal: AbortSignal, fn: (up: Upscaler) => Promise<T>,
    opts: { onProgress?: OnProgress; persist?: boolean } = {}): Promise<T> {
    if (this.busy) throw new Error('busy: another upscale is running');
    if (signal.aborted) throw cancelled();
    this.busy = true;
    let timer = 0;
    const hard = new Promise<never>((_, reject) => {
      const onAbort = () => {
        timer = self.setTimeout(() => {
          Upscaler.terminate();
          this.reset();
          reject(cancelled());
        }, HARD_CANCEL_MS);
      };
      if (signal.aborted) onAbort(); else signal.addEventListener('abort', onAbort, { once: true });
    });
    hard.catch(() => {});
    try {
      const work = (async () => fn(await this.model(entry, { onProgress: opts.onProgress, signal, persist: opts.persist })))();
      return await Promise.race([work, hard]);
    } catch (e) {
      if (signal.aborted) throw cancelled();
      throw e;
    } finally {
      clearTimeout(timer);
      this.busy = false;
    }
  }

  get running() { return this.busy; }
}
