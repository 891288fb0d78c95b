// The inference worker: owns the wasm module and the loaded model, so the page stays
// responsive (a pool of them runs the tiles of one image: pool.ts). One model at a time; requests run in order (but `inspect` and `memory`, which
// answer at once); `cancel` aborts a request between shards or tiles (or before it starts). Files arrive as Blobs and leave as PNG
// Blobs: no canvas touches the pixels.
import { packageFor } from './packages';
import type { Request, Response } from './protocol';

// pkg/ and pkg/cpu/ have the same API.
type Pkg = typeof import('../../pkg/onestep_sr.js');
let model: import('../../pkg/onestep_sr.js').Upscaler | null = null;
const controllers = new Map<number, AbortController>();
let queue: Promise<unknown> = Promise.resolve();

function post(m: Response, transfer: Transferable[] = []) {
  (self as unknown as Worker).postMessage(m, transfer);
}

// A lost GPU device or a failed module leaves this worker unusable (burn starts one device
// per thread; a run that died half way never settles): every pending call and every later
// one fails with the reason, and the page ends this worker and starts another.
let dead: string | null = null;
let lost: Promise<string> | null = null;
const RESTART = 'the next call starts a new one and reads the model again from the cache';

function die(message: string) {
  if (dead) return;
  dead = message;
  for (const id of controllers.keys()) post({ id, type: 'error', message });
  controllers.clear();
  post({ id: 0, type: 'dead', message });
}

// The wasm packages imported so far, by URL (packages.ts), and the one in use: a load picks
// the package for its backend (the WebGPU one is fetched only when WebGPU will run); other
// calls use the package in use, or the one a load with 'auto' would pick.
const packages = new Map<string, Promise<Pkg>>();
let pkg: Promise<Pkg> | null = null;

function imported(url: string): Promise<Pkg> {
  let p = packages.get(url);
  if (!p) {
    p = import(/* @vite-ignore */ url).then(async (m: Pkg) => {
      await m.default();
      const l = m.deviceLost();
      lost = lost ? Promise.race([lost, l]) : l;
      l.then((why) => die(`${why}; ${RESTART}`));
      return m;
    });
    packages.set(url, p);
  }
  return p;
}

async function wasm(req: Request): Promise<Pkg> {
  if (req.op === 'load') return (pkg = packageFor(req.opts?.backend).then(imported));
  pkg ??= packageFor('auto').then(imported);
  return pkg;
}

async function handle(req: Request): Promise<unknown> {
  const m = await wasm(req);
  const signal = controllers.get(req.id)?.signal;
  // Cancelled while it waited behind another request.
  if (signal?.aborted) throw new Error('cancelled');
  const onProgress = (progress: unknown) => post({ id: req.id, type: 'progress', progress });
  switch (req.op) {
    case 'load': {
      const next = await m.Upscaler.load(req.url, { ...req.opts, onProgress, signal });
      model?.free();
      model = next;
      return next.info;
    }
    case 'upscale':
      if (!model) throw new Error('no model loaded: call load() first');
      return model.upscale(req.image, { ...req.opts, onProgress, signal });
    case 'adjust':
      if (!model) throw new Error('no model loaded: call load() first');
      return model.adjust(req.lambdaPix, req.lambdaSem, { ...req.opts, onProgress, signal });
    case 'adjustRegion':
      if (!model) throw new Error('no model loaded: call load() first');
      return model.adjustRegion(req.lambdaPix, req.lambdaSem, req.region);
    case 'plan':
      if (!model) throw new Error('no model loaded: call load() first');
      return model.planTiles(req.image, { ...req.opts, onProgress, signal });
    case 'tile':
      if (!model) throw new Error('no model loaded: call load() first');
      return model.runTile(req.index, { onProgress, signal });
    case 'accept':
      if (!model) throw new Error('no model loaded: call load() first');
      return model.acceptTile(req.index, req.values);
    case 'finish':
      if (!model) throw new Error('no model loaded: call load() first');
      return model.finishTiles({ ...req.opts, onProgress });
    case 'cached':
      return m.Upscaler.cached();
    case 'evict':
      return m.Upscaler.evict(req.url);
    case 'capabilities':
      return m.capabilities(req.opts);
    case 'inspect':
      return m.inspectImage(req.image);
    case 'memory':
      return m.memoryStats();
    default:
      throw new Error(`unknown request ${(req as { op: string }).op}`);
  }
}

/// A result's pixels or tile values move to the page instead of being copied.
function transferable(value: unknown): Transferable[] {
  if (value instanceof ImageData) return [value.data.buffer];
  if (value instanceof Float32Array) return [value.buffer as ArrayBuffer];
  return [];
}

/// A failed request's message; a device loss reported by the run ends the worker, with the
/// device's own reason (its `lost` promise settles moments later, if not already).
async function failed(id: number, err: unknown) {
  const message = err instanceof Error ? err.message : String(err);
  if (message.startsWith('the GPU device was lost') && lost) {
    const why = await Promise.race([lost, new Promise<null>((ok) => setTimeout(() => ok(null), 1000))]);
    die(why ? `${why}; ${RESTART}` : message);
  }
  if (!dead) post({ id, type: 'error', message });
}

self.onmessage = (e: MessageEvent<Request>) => {
  const req = e.data;
  if (req.op === 'cancel') {
    controllers.get(req.target)?.abort();
    return;
  }
  if (dead) {
    post({ id: req.id, type: 'error', message: dead });
    return;
  }
  controllers.set(req.id, new AbortController());
  const settle = () => handle(req).then(
    (value) => { if (controllers.has(req.id)) post({ id: req.id, type: 'done', value }, transferable(value)); },
    (err) => failed(req.id, err),
  ).finally(() => controllers.delete(req.id));
  // Requests that leave the model alone answer at once, even during a run.
  if (req.op === 'inspect' || req.op === 'memory') settle();
  else queue = queue.then(settle);
};

// A panic kills the module, and the call it ran never settles.
self.addEventListener('error', (e) => die(`the worker failed: ${e.message}`));
