// The inference worker: owns the wasm module and the loaded model, so the page stays
// responsive. One model at a time; requests run in order; `cancel` aborts a request
// between shards or tiles (or before it starts). Files arrive as Blobs and leave as PNG
// Blobs: no canvas touches the pixels.
import type { Request, Response } from './protocol';

type Pkg = typeof import('../../pkg/onestep_sr.js');
const pkgUrl = new URL('./pkg/onestep_sr.js', import.meta.url).href;
let pkg: Promise<Pkg> | null = null;
let model: import('../../pkg/onestep_sr.js').Upscaler | null = null;
const controllers = new Map<number, AbortController>();
let queue: Promise<unknown> = Promise.resolve();

function post(m: Response, transfer: Transferable[] = []) {
  (self as unknown as Worker).postMessage(m, transfer);
}

async function wasm(): Promise<Pkg> {
  pkg ??= import(/* @vite-ignore */ pkgUrl).then(async (m: Pkg) => { await m.default(); return m; });
  return pkg;
}

async function handle(req: Request): Promise<unknown> {
  const m = await wasm();
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
    case 'cached':
      return m.Upscaler.cached();
    case 'evict':
      return m.Upscaler.evict(req.url);
    case 'capabilities':
      return m.capabilities(req.opts);
    default:
      throw new Error(`unknown request ${(req as { op: string }).op}`);
  }
}

self.onmessage = (e: MessageEvent<Request>) => {
  const req = e.data;
  if (req.op === 'cancel') {
    controllers.get(req.target)?.abort();
    return;
  }
  controllers.set(req.id, new AbortController());
  queue = queue.then(() => handle(req)).then(
    (value) => post({ id: req.id, type: 'done', value }, value instanceof ImageData ? [value.data.buffer] : []),
    (err) => post({ id: req.id, type: 'error', message: err instanceof Error ? err.message : String(err) }),
  ).finally(() => controllers.delete(req.id));
};

// A panic or a lost device kills the module: report it to every caller instead of hanging.
self.addEventListener('error', (e) => {
  for (const id of controllers.keys()) post({ id, type: 'error', message: `the worker failed: ${e.message}` });
});
