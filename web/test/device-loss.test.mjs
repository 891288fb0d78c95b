// A lost GPU device and a failed worker: the run in flight rejects with the reason at once,
// and through the worker client the next call on the same Upscaler starts a new worker, reads
// the model again from IndexedDB (no shard is downloaded) and gives the normal run's bytes.
// The device is destroyed mid-run from inside the worker (playwright's worker.evaluate), at
// step 8 of the 17 of the photo's one tile (WebGPU on SwiftShader reports every step).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { browser, harness, server } from './helpers.mjs';

const MODEL = '/models/realesr-animevideov3-x4/manifest.json';
const SHARDS = '/models/realesr-animevideov3-x4/shard-';
const LOST = /^the GPU device was lost \(destroyed\): Device was destroyed; /;
let srv;

before(async () => { srv = await server(); });
after(() => srv.close());

/// Defines `run()` in the page (or the worker's global scope, for the package itself): the
/// 16x16 photo upscaled by `window.up` to PNG bytes, or the rejection with the progress seen.
function defineRun() {
  globalThis.run = async () => {
    const seen = [];
    try {
      const photo = await (await fetch('/fixtures/realesrgan/chelsea_16.png')).blob();
      const png = await globalThis.up.upscale(photo, { onProgress: (p) => seen.push(p.text ?? `${p.stage} ${p.done}/${p.total} ${p.part}`) });
      return { bytes: Array.from(new Uint8Array(await png.arrayBuffer())) };
    } catch (e) {
      return { message: e.message, seen };
    }
  };
}

/// Through the worker client: loads the model on `backend` into one worker (the CPU path's
/// pool would start more); returns the worker.
async function load(page, backend) {
  await page.evaluate(defineRun);
  await page.evaluate(async ({ model, backend }) => {
    const { Upscaler } = await import('/client.js');
    window.up = await Upscaler.load(model, { backend, workers: 1 });
  }, { model: MODEL, backend });
  const workers = page.workers();
  assert.equal(workers.length, 1, 'one worker');
  return workers[0];
}

/// In `scope` (a worker or a page): burn's device is the `this` of its command encoders;
/// `then` runs when the run reports step 8 of its tile. With `hang`, every readback from then
/// on never returns (the worst a lost device could do).
function atStep8(scope, then, { post = true } = {}) {
  return scope.evaluate(({ then, post }) => {
    const create = GPUDevice.prototype.createCommandEncoder;
    GPUDevice.prototype.createCommandEncoder = function (...a) { globalThis.gpuDevice = this; return create.apply(this, a); };
    const map = GPUBuffer.prototype.mapAsync;
    GPUBuffer.prototype.mapAsync = function (...a) { return globalThis.hang ? new Promise(() => {}) : map.apply(this, a); };
    const fire = (p) => {
      if (!globalThis.fired && p?.stage === 'upscale' && p.part === 8) { globalThis.fired = true; (0, eval)(then)(); }
    };
    if (post) {
      // The worker reports progress with postMessage.
      const send = self.postMessage.bind(self);
      self.postMessage = (m, transfer) => { send(m, transfer); if (m?.type === 'progress') fire(m.progress); };
    } else {
      // The package in a page: wrap the Upscaler's onProgress.
      const upscale = globalThis.up.upscale.bind(globalThis.up);
      globalThis.up.upscale = (img, o) => upscale(img, { ...o, onProgress: (p) => { o.onProgress?.(p); fire(p); } });
    }
  }, { then: then.toString(), post });
}

test('WebGPU device lost mid-run: a clear error, then a new device, the model from the cache, the same bytes', { timeout: 120_000 }, async () => {
  const ctx = await browser({ webgpu: true });
  try {
    const page = await harness(ctx, srv.url);
    const worker = await load(page, 'webgpu');
    const normal = await page.evaluate(() => window.run());
    assert.ok(normal.bytes, normal.message);
    await atStep8(worker, () => globalThis.gpuDevice.destroy());
    const t0 = Date.now();
    const lost = await page.evaluate(() => window.run());
    console.log(`lost: ${Date.now() - t0} ms: ${lost.message}`);
    assert.match(lost.message ?? 'resolved', LOST);
    assert.match(lost.message, /the next call starts a new one and reads the model again from the cache$/);
    assert.ok(lost.seen.some((t) => /tile 1 of 1 \(step 8 of 17\)/.test(t)) && !lost.seen.includes('Writing the PNG'), `mid-run: ${lost.seen.join(' | ')}`);

    srv.clear();
    const again = await page.evaluate(() => window.run());
    assert.ok(again.bytes, again.message);
    assert.equal(srv.requests(SHARDS), 0, 'no shard downloaded again');
    assert.equal(page.workers().length, 1, 'the old worker is gone, a new one runs');
    assert.notEqual(page.workers()[0], worker);
    assert.equal(Buffer.compare(Buffer.from(again.bytes), Buffer.from(normal.bytes)), 0, 'the PNG bytes of the normal run before the loss');
  } finally {
    await ctx.close();
  }
});

test('no call hangs: a readback that never returns after the loss (worker client and package), a worker that fails mid-run', { timeout: 120_000 }, async () => {
  const ctx = await browser({ webgpu: true });
  try {
    const page = await harness(ctx, srv.url);
    // The package itself in the page: the run ends with the device's `lost`.
    await page.evaluate(defineRun);
    await page.evaluate(async (model) => { window.up = await window.pkg.Upscaler.load(model, { backend: 'webgpu' }); }, MODEL);
    await atStep8(page, () => { globalThis.hang = true; setTimeout(() => globalThis.gpuDevice.destroy(), 200); }, { post: false });
    const direct = await page.evaluate(() => window.run());
    assert.match(direct.message ?? 'resolved', LOST);
    assert.match(direct.message, /reload the page to start a new one$/);
    const later = await page.evaluate(async () => { try { await window.up.upscale(new Blob([])); return 'resolved'; } catch (e) { return e.message; } });
    assert.match(later, LOST);

    // The worker client: the worker ends, the next load gets a new one.
    const worker = await load(page, 'webgpu');
    await atStep8(worker, () => { globalThis.hang = true; setTimeout(() => globalThis.gpuDevice.destroy(), 200); });
    const lost = await page.evaluate(() => window.run());
    assert.match(lost.message ?? 'resolved', LOST);

    // A failure that kills the module (a wasm panic surfaces as an uncaught error in the
    // worker) while the CPU fallback runs: the run rejects, and the next call works.
    const cpu = await load(page, 'cpu');
    await cpu.evaluate(() => {
      const send = self.postMessage.bind(self);
      self.postMessage = (m, transfer) => {
        send(m, transfer);
        if (m?.type === 'progress' && m.progress?.stage === 'upscale') setTimeout(() => { throw new Error('unreachable'); });
      };
    });
    const failed = await page.evaluate(() => window.run());
    assert.match(failed.message ?? 'resolved', /^the worker failed: .*unreachable/);
    srv.clear();
    const again = await page.evaluate(() => window.run());
    assert.ok(again.bytes, again.message);
    assert.equal(srv.requests(SHARDS), 0, 'no shard downloaded again');
  } finally {
    await ctx.close();
  }
});
