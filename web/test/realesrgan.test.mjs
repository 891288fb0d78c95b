// Real-ESRGAN x4plus with the real weights in headless Chromium (WebGPU on SwiftShader, and
// the CPU fallback) against the native CLI on the same photo; the IndexedDB cache.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { readFileSync } from 'node:fs';
import { browser, harness, onestep, scratch, server } from './helpers.mjs';
import { pngDiff } from './png.mjs';

const MODEL = '/models/realesrgan-x4plus/manifest.json';
// 16x16: WebGPU on SwiftShader (the only adapter in CI) runs RRDBNet at about 0.5 GFLOP/s.
const PHOTO = 'tests/fixtures/realesrgan/chelsea_16.png';
let srv, out;

// WebGPU runs the straight-alpha gradient as a file: Blob in, PNG out (exact.test.mjs runs
// the same path on the CPU and through the worker).
const ALPHA = 'tests/fixtures/browser/alpha_gradient_16.png';

before(async () => {
  out = scratch();
  // The reference: the native CLI on burn's CPU backend.
  onestep('upscale', PHOTO, '-o', `${out}/native.png`, '--device', 'cpu');
  onestep('upscale', ALPHA, '-o', `${out}/alpha.png`, '--device', 'cpu');
  srv = await server({ '/out/': out });
});
after(() => srv.close());

async function upscaleInPage(page, opts = {}) {
  return page.evaluate(async ({ model, photo, opts }) => {
    const t0 = performance.now();
    const up = await window.pkg.Upscaler.load(model, opts);
    const t1 = performance.now();
    const img = await window.pixels(photo);
    const stages = [];
    const result = await up.upscale(img, { onProgress: (p) => stages.push(p.stage) });
    const t2 = performance.now();
    const d = window.diff(result, await window.pixels('/out/native.png'));
    return { info: up.info, diff: d, size: [result.width, result.height], stages, loadMs: t1 - t0, runMs: t2 - t1 };
  }, { model: MODEL, photo: `/fixtures/realesrgan/chelsea_16.png`, opts });
}

test('WebGPU: the browser gives the native CLI image within 1 level; a second load reads only IndexedDB', async () => {
  const profile = scratch();
  let ctx = await browser({ profile });
  try {
    const page = await harness(ctx, srv.url);
    const caps = await page.evaluate(() => window.pkg.capabilities({ width: 128, height: 128 }));
    assert.equal(caps.webgpu, true, 'SwiftShader WebGPU adapter expected');
    assert.ok(caps.estimate.peakBytes > 0, JSON.stringify(caps.estimate));
    srv.clear();
    // Tensors copied into the wasm heap in 64 KiB row blocks and joined on the GPU; the
    // software adapter forced (auto would pick the CPU).
    const r = await page.evaluate(async ({ model }) => {
      const t0 = performance.now();
      const up = await window.pkg.Upscaler.load(model, { backend: 'webgpu', uploadBlockBytes: 65536 });
      const t1 = performance.now();
      const blob = await (await fetch('/fixtures/browser/alpha_gradient_16.png')).blob();
      const progress = [];
      const png = await up.upscale(blob, { onProgress: (p) => progress.push([Math.round(performance.now() - t1), p.stage, p.done, p.total, p.part ?? null]) });
      const t2 = performance.now();
      return { info: up.info, type: png.type, bytes: Array.from(new Uint8Array(await png.arrayBuffer())), progress, loadMs: t1 - t0, runMs: t2 - t1 };
    }, { model: MODEL });
    const d = pngDiff(Buffer.from(r.bytes), readFileSync(`${out}/alpha.png`));
    console.log('webgpu', JSON.stringify({ info: r.info, diff: d, loadMs: r.loadMs, runMs: r.runMs, progress: r.progress }));
    assert.equal(r.info.backend, 'webgpu');
    assert.equal(r.type, 'image/png');
    assert.deepEqual(d.size, [64, 64]);
    assert.ok(d.max <= 1, `max difference ${d.max} levels over RGBA (${d.n} values differ)`);
    // A first WebGPU run reports between the body blocks of its tile: progress inside a
    // long tile, never a silent stretch.
    assert.ok(r.progress.filter((p) => p[1] === 'upscale' && p[4] !== null).length >= 20, JSON.stringify(r.progress));
    assert.equal(r.info.fromNetwork, 1);
    assert.ok(srv.requests('/models/realesrgan-x4plus/shard-') >= 1);
    const cached = await page.evaluate(() => window.pkg.Upscaler.cached());
    assert.equal(cached.length, 1);
    assert.equal(cached[0].complete, true);
    assert.equal(cached[0].bytes, 33423116);
  } finally {
    await ctx.close();
  }
  // A new browser on the same profile: the model comes from IndexedDB, no shard request.
  srv.clear();
  ctx = await browser({ profile });
  try {
    const page = await harness(ctx, srv.url);
    // The cache does not depend on the backend: the CPU builds the model faster here.
    const info = await page.evaluate(async (m) => (await window.pkg.Upscaler.load(m, { backend: 'cpu' })).info, MODEL);
    assert.equal(srv.requests('/models/realesrgan-x4plus/shard-'), 0, 'shard requests on the second load');
    assert.equal(info.fromCache, 1);
    assert.equal(info.fromNetwork, 0);
    assert.equal(await page.evaluate((m) => window.pkg.Upscaler.evict(m), `${srv.url}${MODEL}`), true);
    assert.deepEqual(await page.evaluate(() => window.pkg.Upscaler.cached()), []);
  } finally {
    await ctx.close();
  }
});

test('without WebGPU the CPU fallback upscales and says so', async () => {
  const ctx = await browser({ webgpu: false });
  try {
    const page = await harness(ctx, srv.url);
    const caps = await page.evaluate(() => window.pkg.capabilities());
    assert.equal(caps.webgpu, false);
    assert.equal(caps.backend, 'cpu');
    assert.match(caps.notice, /CPU/);
    const r = await upscaleInPage(page);
    console.log('cpu', JSON.stringify({ ...r, stages: r.stages.length }));
    assert.equal(r.info.backend, 'cpu');
    assert.match(r.info.notices.join(' '), /CPU/);
    assert.ok(r.diff.max <= 1, `max difference ${r.diff.max} levels`);
    // Cancellation between tiles; the Upscaler stays usable; bad options are clear errors.
    const c = await page.evaluate(async (model) => {
      const up = await window.pkg.Upscaler.load(model);
      const img = await window.pixels('/fixtures/realesrgan/chelsea_16.png');
      const ac = new AbortController();
      const out = { tiles: 0, done: 0 };
      try {
        // The abort comes as a later task, as a worker's message would: the run must give
        // the event loop a turn between tiles to see it.
        await up.upscale(img, { tile: 16, overlap: 4, signal: ac.signal, onProgress: (p) => {
          out.tiles = p.total; out.done = p.done;
          if (p.done === 1) setTimeout(() => ac.abort(), 0);
        } });
        out.cancel = 'resolved';
      } catch (e) { out.cancel = e.message; }
      out.after = (await up.upscale(img)).width;
      for (const [k, o] of [['tile', { tile: 8, overlap: 8 }], ['lambda', { lambdaPix: 1 }], ['image', {}]]) {
        try { await up.upscale(k === 'image' ? 'not an image' : img, o); out[k] = 'resolved'; } catch (e) { out[k] = e.message; }
      }
      return out;
    }, MODEL);
    assert.ok(c.tiles > 1, `${c.tiles} tiles`);
    assert.equal(c.cancel, 'cancelled');
    assert.ok(c.done < c.tiles, `stopped after ${c.done} of ${c.tiles} tiles`);
    assert.equal(c.after, 64);
    assert.match(c.tile, /tile must be positive and larger than overlap/);
    assert.match(c.lambda, /apply to PiSA-SR models only/);
    assert.match(c.image, /takes a File or Blob \(PNG, JPEG or WebP\), an ImageData or an ImageBitmap/);
  } finally {
    await ctx.close();
  }
});
