// Real-ESRGAN on the CPU with every core: the tiles of one image spread over a pool of
// workers, each with its own wasm instance and model (no shared memory: nothing depends on
// cross-origin isolation). Every worker plans the same tiles of the same image (planTiles);
// each pulls the next tile when it is free (a queue, so no worker waits on another's tile);
// the first worker blends the outputs in tile order and post-processes the result with
// upscale()'s own code (acceptTile, finishTiles): the same bytes whatever the pool's size.
import type { Channel } from './channel';
import type { Input } from './protocol';

/** What one worker costs: its wasm instance, the model (Real-ESRGAN x4plus: 67 MB of f32
 *  weights, 259 MiB once prepared for the CPU) and a run's buffers: a pool worker peaked at 863 MiB
 *  of wasm Memory on x4plus with 192 px tiles (web/bench/pool.mjs; docs/browser.md). */
export const WORKER_BYTES = 900 * 2 ** 20;
/** The share of the device's memory the pool may take. */
export const MEMORY_SHARE = 0.5;
/** More workers than this add little: the tiles of a photo run out, memory bandwidth too. */
export const MAX_WORKERS = 8;

export type Workers = number | 'auto';

/** 'auto': one worker per core (navigator.hardwareConcurrency), at most as many as fit in
 *  MEMORY_SHARE of navigator.deviceMemory (Chromium's, in GiB, rounded and at most 8; 4 GiB
 *  assumed where an engine does not tell), at most MAX_WORKERS, at least 1. */
export function autoWorkers(nav: { hardwareConcurrency?: number; deviceMemory?: number } = navigator): number {
  const cores = nav.hardwareConcurrency || 1;
  const memory = (nav.deviceMemory || 4) * 2 ** 30;
  return Math.max(1, Math.min(cores, MAX_WORKERS, Math.floor((memory * MEMORY_SHARE) / WORKER_BYTES)));
}

/** The pool size asked for: a whole number of at least 1, or 'auto' (the default). */
export function poolSize(workers: Workers | undefined): number {
  if (workers === undefined || workers === 'auto') return autoWorkers();
  if (!Number.isInteger(workers) || workers < 1) throw new Error(`workers must be 'auto' or a whole number of at least 1, not ${String(workers)}`);
  return workers;
}

/** A tile's progress as the wasm package reports it (body blocks of the tile running). */
interface TileProgress { part?: number; parts?: number }

/**
 * One upscale over the pool. `first`: the worker that blends (its model loaded); `others`:
 * the rest, each once its model is loaded (a worker still loading joins when ready, and is
 * not waited for once the tiles are done). `report` gets raw progress (progress.ts): the
 * first worker's read and write stages, and between them tiles done, with the tiles running
 * (`running`) and their parts summed. An abort of `signal`, or any failure, stops every
 * worker at its next check; the run then rejects ('cancelled' for an abort).
 */
export async function runPool(
  first: Channel, others: Promise<Channel>[], image: Input, opts: Record<string, unknown>,
  report: (raw: any) => void, signal?: AbortSignal,
): Promise<Blob | ImageData> {
  if (signal?.aborted) throw new Error('cancelled');
  const stop = new AbortController();
  const onAbort = () => stop.abort();
  signal?.addEventListener('abort', onAbort, { once: true });
  let failure: Error | null = null;
  const fail = (e: unknown) => {
    failure ??= e instanceof Error ? e : new Error(String(e));
    stop.abort();
    allDone();
  };
  let allDone!: () => void;
  const tilesDone = new Promise<void>((ok) => (allDone = ok));
  try {
    const { total } = await first.call<{ total: number }>({ op: 'plan', image, opts }, { onProgress: report, signal: stop.signal });
    let next = 0, done = 0, accepted = 0;
    const running = new Map<number, TileProgress>();
    const progress = () => {
      let part = 0, parts = 0;
      for (const p of running.values()) if (p.parts) { part += p.part! / p.parts; parts = p.parts; }
      const inside = parts ? { part: Math.round(part * parts), parts } : {};
      report({ stage: 'upscale', done, total, running: running.size, ...inside });
    };
    // Outputs wait here until every tile before them is blended (the blend's fixed order).
    const outputs = new Map<number, Float32Array>();
    const accepts: Promise<unknown>[] = [];
    const blend = () => {
      for (let v = outputs.get(accepted); v; v = outputs.get(accepted)) {
        outputs.delete(accepted);
        const accept = first.call({ op: 'accept', index: accepted, values: v }, {}, [v.buffer]);
        accept.catch(fail);
        accepts.push(accept);
        accepted++;
      }
    };
    // The calls in flight: a stopped run settles them all before it rejects.
    const inflight = new Set<Promise<unknown>>();
    const track = <T>(call: Promise<T>) => {
      inflight.add(call);
      call.catch(() => {}).finally(() => inflight.delete(call));
      return call;
    };
    const work = async (ch: Channel, planned: boolean) => {
      if (!planned) {
        if (next >= total || stop.signal.aborted) return;
        await track(ch.call({ op: 'plan', image, opts }, { signal: stop.signal }));
      }
      while (next < total && !stop.signal.aborted) {
        const i = next++;
        running.set(i, {});
        progress();
        const values = await track(ch.call<Float32Array>({ op: 'tile', index: i }, {
          signal: stop.signal,
          onProgress: (p: TileProgress) => { running.set(i, p); progress(); },
        }));
        // A tile that finished as the run stopped goes nowhere.
        if (stop.signal.aborted) return;
        running.delete(i);
        done++;
        outputs.set(i, values);
        blend();
        // Reported as the next tile starts, or here when none is left.
        if (next >= total) progress();
        if (done === total) allDone();
      }
    };
    work(first, true).catch(fail);
    // A worker whose model failed to load leaves the tiles to the others.
    for (const o of others) o.then((ch) => work(ch, false), (e) => console.warn(`a pool worker could not load the model: ${e.message}`)).catch(fail);
    await tilesDone;
    if (failure) {
      // Every worker's call settles (each stops at its next check) before the run rejects.
      await Promise.allSettled([...inflight]);
      throw failure;
    }
    await Promise.all(accepts);
    return await first.call<Blob | ImageData>({ op: 'finish', opts: {} }, { onProgress: report, signal });
  } catch (e) {
    throw signal?.aborted ? new Error('cancelled') : e;
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}
