// What the page and the element share around the worker client: one loaded model at a time
// (the worker holds one), progress as one line + a fraction, and a Cancel that always works:
// the run is asked to stop between tiles, and if it has not stopped within a moment the
// worker is ended (Upscaler.terminate) and the model is read again from IndexedDB next time.
import { Upscaler } from './client';
import type { CatalogEntry } from './catalog';

export interface Progress {
  stage: string;
  done: number;
  total: number;
  /** 0..1 of the whole call. */
  fraction: number;
  /** One line for a person, as the engine wrote it. */
  text: string;
  /** Seconds left, estimated from the fraction done so far (null until it means something). */
  eta: number | null;
}

export type OnProgress = (p: Progress) => void;

/** How long a cancelled run may take to reach its next check before the worker is ended. */
export const HARD_CANCEL_MS = 1500;

/** Normalises the engine's progress objects (and derives a time-left estimate). */
export function progressReporter(onProgress: OnProgress | undefined, t0 = performance.now()): (p: any) => void {
  return (p: any) => {
    if (!onProgress || !p) return;
    const done = Number(p.done ?? p.shard ?? p.bytesDone ?? 0);
    const total = Number(p.total ?? p.shards ?? p.bytesTotal ?? 0);
    const fraction = Number.isFinite(p.fraction) ? Math.min(1, Math.max(0, p.fraction)) : total > 0 ? Math.min(1, done / total) : 0;
    const elapsed = (performance.now() - t0) / 1000;
    const eta = Number.isFinite(p.etaMs) ? p.etaMs / 1000 : Number.isFinite(p.eta) ? p.eta : fraction > 0.02 && elapsed > 0.5 ? (elapsed * (1 - fraction)) / fraction : null;
    const text = typeof p.text === 'string' && p.text ? p.text : `${p.stage ?? 'Working'}: ${done} of ${total}`;
    onProgress({ stage: String(p.stage ?? ''), done, total, fraction, text, eta });
  };
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

/** "about 14 s left" / "about 2 min left". */
export function formatEta(s: number | null): string {
  if (s === null || !Number.isFinite(s)) return '';
  if (s < 60) return `about ${Math.max(1, Math.round(s))} s left`;
  return `about ${Math.round(s / 60)} min left`;
}
