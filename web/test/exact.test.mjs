// The browser gives the CLI's image: files go in as Blobs and come out as PNG Blobs, decoded
// and encoded in wasm by the CLI's own code (EXIF orientation, 16-bit, straight alpha, the
// header's size check), on the CPU fallback and on WebGPU, through the wasm package and the
// worker client. `backend: 'auto'` skips a software adapter (SwiftShader) for the CPU; the
// worker then runs the CPU-only package, and `backend: 'webgpu'` the WebGPU one.
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { browser, harness, onestep, scratch, server } from './helpers.mjs';
import { lyingPng, pngDiff } from './png.mjs';

const MODEL = '/models/realesrgan-x4plus/manifest.json';
// The worker-on-WebGPU check runs the compact model: the same path (Blob in, worker, WebGPU,
// PNG out) at a tenth of SwiftShader's time; x4plus on WebGPU is realesrgan.test.mjs's.
const COMPACT = '/models/realesr-animevideov3-x4/manifest.json';
// autoWorkers for (cores, GiB of device memory): 900 MiB a worker within half the memory, at
// most 8 and one per core; 4 GiB where the engine does not say (pool.ts).
const AUTO = [2, 4, 1, 1, 2, 1];
// A straight alpha gradient (255 -> 0 across, x1.0 -> x0.5 down), the same at 16 bits, and a
// JPEG stored 12x8 with EXIF orientation 6 (upright 8x12).
const FILES = { alpha: 'alpha_gradient_16.png', alpha16: 'alpha_gradient_16_rgba16.png', exif: 'exif_rot6.jpg' };
const SIZES = { alpha: [64, 64], alpha16: [64, 64], exif: [32, 48] };
let srv, out;
const cliPng = (k, model = MODEL) => readFileSync(model === COMPACT ? `${out}/compact/${k}.png` : `${out}/${k}.png`);

before(async () => {
  out = scratch();
  mkdirSync(`${out}/compact`);
  for (const [k, f] of Object.entries(FILES)) {
    onestep('upscale', `tests/fixtures/browser/${f}`, '-o', `${out}/${k}.png`, '--device', 'cpu');
    onestep('upscale', `tests/fixtures/browser/${f}`, '-o', `${out}/compact/${k}.png`, '--device', 'cpu', '--model', 'models/realesr-animevideov3-x4');
  }
  srv = await server({ '/out/': out });
});
after(() => srv.close());

/// In the page: each file fetched as a Blob, upscaled by `up` (the wasm package's Upscaler
/// or the worker client's) to a PNG Blob; its bytes come back to Node.
async function runFiles(page, { client, load, files, model = MODEL }) {
  const r = await page.evaluate(async ({ model, client, load, files }) => {
    const api = client ? await import('/client.js') : window.pkg;
    const up = await api.Upscaler.load(model, load);
    const out = { info: up.info, pngs: {}, texts: [] };
    for (const [k, f] of Object.entries(files)) {
      const blob = await (await fetch(`/fixtures/browser/${f}`)).blob();
      const png = await up.upscale(blob, { output: 'png', onProgress: (p) => out.texts.push(p.text ?? p.stage) });
      out.pngs[k] = { type: png.type, bytes: Array.from(new Uint8Array(await png.arrayBuffer())) };
    }
    return out;
  }, { model, client, load, files });
  return { ...r, model };
}

function assertMatchesCli(r, label) {
  for (const [k, png] of Object.entries(r.pngs)) {
    assert.equal(png.type, 'image/png', `${label} ${k}: a PNG Blob`);
    const want = cliPng(k, r.model);
    const d = pngDiff(Buffer.from(png.bytes), want);
    console.log(label, k, JSON.stringify(d), Buffer.compare(Buffer.from(png.bytes), want) === 0 ? 'same bytes' : 'bytes differ');
    assert.deepEqual(d.size, SIZES[k], `${label} ${k}: size and orientation`);
    assert.ok(d.max <= 1, `${label} ${k}: max difference ${d.max} levels over RGBA (${d.n} values differ)`);
  }
}

test('CPU fallback: Blob in, PNG out gives the CLI\'s PNG (alpha, 16-bit, EXIF), in the page and through the worker', async () => {
  const ctx = await browser({ webgpu: false });
  try {
    const page = await harness(ctx, srv.url);
    const direct = await runFiles(page, { client: false, load: {}, files: FILES });
    assert.equal(direct.info.backend, 'cpu');
    assertMatchesCli(direct, 'cpu');
    const worker = await runFiles(page, { client: true, load: {}, files: { alpha: FILES.alpha, exif: FILES.exif } });
    assert.equal(worker.info.backend, 'cpu');
    assertMatchesCli(worker, 'cpu worker');
    // The worker client's progress is enriched with a line for a person.
    assert.ok(worker.texts.some((t) => /^Upscaling: tile 1 of 1/.test(t)), worker.texts.join(' | '));
    assert.ok(worker.texts.includes('Writing the PNG'), worker.texts.join(' | '));
    // Bad files: clear errors, before any pixel is allocated for a lying header.
    const huge = Array.from(lyingPng(40000, 40000));
    const errors = await page.evaluate(async ({ model, huge }) => {
      const up = await window.pkg.Upscaler.load(model);
      const png = new Uint8Array(await (await fetch('/fixtures/browser/alpha_gradient_16.png')).arrayBuffer());
      const cases = { truncated: new Blob([png.slice(0, 60)]), empty: new Blob([]), text: new Blob(['hello']), huge: new Blob([new Uint8Array(huge)]) };
      const out = {};
      for (const [k, b] of Object.entries(cases)) {
        try { await up.upscale(b); out[k] = 'resolved'; } catch (e) { out[k] = e.message; }
      }
      try { await up.upscale(new Blob([png]), { scale: 5 }); out.scale = 'resolved'; } catch (e) { out.scale = e.message; }
      try { await up.upscale(new Blob([png]), { output: 'jpeg' }); out.output = 'resolved'; } catch (e) { out.output = e.message; }
      return out;
    }, { model: MODEL, huge });
    console.log(JSON.stringify(errors));
    assert.match(errors.truncated, /corrupt or truncated/);
    assert.match(errors.empty, /the file is empty/);
    assert.match(errors.text, /not a PNG, JPEG or WebP image/);
    assert.match(errors.huge, /40000x40000 pixels; the largest supported input is 4 megapixels/);
    assert.match(errors.scale, /at most the model's 4/);
    assert.match(errors.output, /output must be "png" or "imagedata"/);
  } finally {
    await ctx.close();
  }
});

test('an input over the browser\'s limit is refused before any work: inspectImage, the page and the element', async () => {
  const { openPage, recordRequests } = await import('./ui.mjs');
  const ctx = await browser({ webgpu: false });
  const requests = recordRequests(ctx);
  const weights = () => requests.filter((r) => new URL(r.url).pathname.startsWith('/models/')).map((r) => r.url);
  // Any decode of pixels in the page goes through createImageBitmap (the engine's is in wasm).
  await ctx.addInitScript(() => {
    const create = globalThis.createImageBitmap;
    globalThis.decodes = 0;
    globalThis.createImageBitmap = (...a) => { globalThis.decodes++; return create(...a); };
  });
  const TOO_LARGE = 'the image is 40000x40000 pixels; the largest supported input is 4 megapixels';
  try {
    // The API: the package and the worker client read the header only (the upright size).
    const page = await harness(ctx, srv.url);
    const api = await page.evaluate(async (huge) => {
      const client = await import('/client.js');
      const out = {};
      const blob = async (f) => (await fetch(`/fixtures/browser/${f}`)).blob();
      for (const [name, inspect] of [['pkg', window.pkg.inspectImage], ['client', client.inspectImage]]) {
        const r = out[name] = {};
        const tryIt = async (k, v) => { try { r[k] = await inspect(v); } catch (e) { r[k] = e.message; } };
        await tryIt('huge', new Blob([new Uint8Array(huge)]));
        await tryIt('exif', await blob('exif_rot6.jpg'));
        await tryIt('png', await blob('alpha_gradient_16.png'));
        await tryIt('pixels', new ImageData(2500, 1700));
        await tryIt('text', new Blob(['hello']));
      }
      return out;
    }, Array.from(lyingPng(40000, 40000)));
    for (const r of Object.values(api)) {
      assert.equal(r.huge, TOO_LARGE);
      assert.deepEqual(r.exif, { width: 8, height: 12, format: 'jpeg' });
      assert.deepEqual(r.png, { width: 16, height: 16, format: 'png' });
      assert.equal(r.pixels, 'the image is 2500x1700 pixels; the largest supported input is 4 megapixels');
      assert.equal(r.text, 'not a PNG, JPEG or WebP image');
    }

    // The page: not queued, not decoded, no weights requested.
    const app = await openPage(ctx, `${srv.url}/`);
    await app.getByLabel('Choose image').setInputFiles({ name: 'huge.png', mimeType: 'image/png', buffer: lyingPng(40000, 40000) });
    await app.waitForFunction(() => /^Could not add/.test(document.getElementById('message').textContent));
    assert.equal(await app.textContent('#message'), `Could not add huge.png: ${TOO_LARGE}.`);
    assert.equal(await app.locator('#message').getAttribute('class'), 'msg error');
    assert.equal(await app.locator('#queue li').count(), 0);
    assert.equal(await app.evaluate(() => globalThis.decodes), 0, 'no decode in the page');

    // The element: upscale() rejects and upscale-error says why; a chosen file is refused too.
    const demo = await openPage(ctx, `${srv.url}/demo.html`);
    const el = await demo.evaluate(async (huge) => {
      const up = document.getElementById('up');
      await customElements.whenDefined('onestep-upscaler');
      const events = [];
      up.addEventListener('upscale-error', (e) => events.push(e.detail.message));
      let rejected;
      try { await up.upscale(new Blob([new Uint8Array(huge)])); rejected = 'resolved'; } catch (e) { rejected = e.message; }
      return { rejected, events, status: up.shadowRoot.querySelector('.msg').textContent };
    }, Array.from(lyingPng(40000, 40000)));
    assert.deepEqual(el, { rejected: TOO_LARGE, events: [TOO_LARGE], status: TOO_LARGE });
    await demo.locator('onestep-upscaler input[type=file]').setInputFiles({ name: 'huge.png', mimeType: 'image/png', buffer: lyingPng(40000, 40000) });
    await demo.waitForFunction(() => /^huge\.png: /.test(document.getElementById('up').shadowRoot.querySelector('.msg').textContent));
    assert.equal(await demo.evaluate(() => document.getElementById('up').shadowRoot.querySelector('.go').disabled), true, 'nothing to upscale');
    assert.equal(await demo.evaluate(() => globalThis.decodes), 0, 'no decode in the element\'s page');
    assert.deepEqual(weights(), [], 'no weights requested');
  } finally {
    await ctx.close();
  }
});

test('SwiftShader only: auto picks the CPU and says why; webgpu still runs on it and gives the CLI\'s PNG', async () => {
  const ctx = await browser({ webgpu: true });
  try {
    const page = await harness(ctx, srv.url);
    const auto = await page.evaluate(async (model) => {
      const caps = await window.pkg.capabilities();
      const up = await window.pkg.Upscaler.load(model);
      return { caps: { webgpu: caps.webgpu, backend: caps.backend, notice: caps.notice, fallback: caps.adapter?.isFallbackAdapter }, info: up.info };
    }, MODEL);
    console.log(JSON.stringify(auto));
    assert.equal(auto.caps.webgpu, true, 'a WebGPU adapter (SwiftShader) exists');
    assert.equal(auto.caps.fallback, true, 'SwiftShader is a fallback adapter');
    assert.equal(auto.caps.backend, 'cpu');
    assert.equal(auto.info.backend, 'cpu');
    assert.match(auto.info.notices.join(' '), /only WebGPU adapter is a software one .*running on the CPU/);
    // The CPU-only package has no WebGPU: forced, it refuses and names the package that has.
    const refused = await page.evaluate(async (model) => {
      const m = await import('/pkg/cpu/onestep_sr.js');
      await m.default();
      return m.Upscaler.load(model, { backend: 'webgpu' }).then(() => 'loaded', (e) => e.message);
    }, COMPACT);
    assert.match(refused, /CPU-only wasm package \(pkg\/cpu\/\).*pkg\/onestep_sr\.js/);
    // Through the worker on WebGPU with the compact model (x4plus runs on WebGPU in
    // realesrgan.test.mjs, through the package itself); ONESTEP_BROWSER_FULL=1 runs every file.
    // Through the worker, 'auto' on SwiftShader imports the CPU-only package (packages.ts);
    // the 'webgpu' load below then imports the WebGPU one into the same worker.
    srv.clear();
    const viaWorker = await page.evaluate(async () => (await import('/client.js')).capabilities());
    assert.equal(viaWorker.backend, 'cpu');
    assert.deepEqual([srv.requests('/pkg/cpu/onestep_sr_bg.wasm'), srv.requests('/pkg/onestep_sr_bg.wasm')], [1, 0], 'the wasm the worker fetched');
    const files = process.env.ONESTEP_BROWSER_FULL ? FILES : { exif: FILES.exif, alpha: FILES.alpha };
    const t0 = Date.now();
    const gpu = await runFiles(page, { client: true, load: { backend: 'webgpu' }, files, model: COMPACT });
    console.log(`webgpu worker: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    assert.equal(gpu.info.backend, 'webgpu');
    assertMatchesCli(gpu, 'webgpu worker');
  } finally {
    await ctx.close();
  }
});

test('the page: Download gives the API\'s bytes, and the status says what happens now through a long run', async () => {
  const { download, openPage } = await import('./ui.mjs');
  const { join } = await import('node:path');
  const { root } = await import('./helpers.mjs');
  const ctx = await browser({ webgpu: false });
  try {
    const page = await openPage(ctx, `${srv.url}/`);
    // The API's bytes for each file (the worker client, the same backend as the page).
    const api = await page.evaluate(async (files) => {
      const { Upscaler } = await import('/client.js');
      const up = await Upscaler.load('/models/realesrgan-x4plus/manifest.json');
      const out = {};
      for (const [k, f] of Object.entries(files)) {
        const png = await up.upscale(await (await fetch(`/fixtures/browser/${f}`)).blob());
        out[k] = Array.from(new Uint8Array(await png.arrayBuffer()));
      }
      return out;
    }, { alpha: FILES.alpha, exif: FILES.exif });
    for (const [k, f] of Object.entries({ alpha: FILES.alpha, exif: FILES.exif })) {
      await page.getByLabel('Choose image').setInputFiles(join(root, 'tests/fixtures/browser', f));
      await page.getByRole('button', { name: 'Upscale', exact: true }).click();
      const link = page.getByRole('link', { name: 'Download', exact: true });
      await link.waitFor({ state: 'visible', timeout: 120_000 });
      const d = await download(page, link);
      assert.equal(d.name, f.replace(/\.[^.]+$/, '_x4.png'));
      assert.ok(Buffer.compare(d.bytes, Buffer.from(api[k])) === 0, `${k}: the page's Download is the API's PNG, byte for byte`);
      assert.ok(Buffer.compare(d.bytes, cliPng(k)) === 0 || pngDiff(d.bytes, cliPng(k)).max <= 1, `${k}: and the CLI's`);
      await page.getByRole('button', { name: 'Upscale', exact: true }).waitFor({ state: 'visible' });
    }
    // A long run (an 80x48 photo, one 100x68 tile on the CPU): sample the status line and the
    // bar every 200 ms.
    await page.evaluate(() => {
      window.samples = [];
      const bar = document.getElementById('bar');
      window.sampler = setInterval(() => window.samples.push([performance.now(), document.getElementById('status').textContent, bar.hidden ? null : bar.value]), 200);
    });
    await page.getByLabel('Choose image').setInputFiles(join(root, 'tests/fixtures/realesrgan/chelsea_80x48.png'));
    await page.getByRole('button', { name: 'Upscale', exact: true }).click();
    await page.waitForFunction(() => /^Done/.test(document.getElementById('status').textContent), null, { timeout: 300_000 });
    const samples = await page.evaluate(() => {
      clearInterval(window.sampler);
      window.samples.push([performance.now(), document.getElementById('status').textContent, null]);
      return window.samples;
    });
    const first = samples.findIndex(([, t]) => /^(Reading the image|Upscaling)/.test(t));
    const done = samples.findIndex(([, t]) => /^Done/.test(t));
    assert.ok(first >= 0 && done > first, samples.map((s) => s[1]).join(' | '));
    const run = samples.slice(first, done);
    let last = run[0], gap = 0;
    for (const s of run) {
      if (s[1] !== last[1] || s[2] !== last[2]) { gap = Math.max(gap, s[0] - last[0]); last = s; }
    }
    gap = Math.max(gap, samples[done][0] - last[0]);
    const texts = [...new Set(run.map((s) => s[1]))];
    console.log(`long run: ${((samples[done][0] - run[0][0]) / 1000).toFixed(1)} s, ${texts.length} distinct lines, longest still ${(gap / 1000).toFixed(1)} s; e.g. ${texts.slice(-3).join(' | ')}`);
    assert.ok(gap <= 3000, `the status stood still for ${gap} ms`);
    assert.deepEqual(run.filter((s) => /download/i.test(s[1])).map((s) => s[1]), [], 'no download message while the model runs');
    assert.ok(texts.some((t) => /left$/.test(t)), `a time left is shown: ${texts.join(' | ')}`);
  } finally {
    await ctx.close();
  }
});

test('the worker pool: workers: 2 gives workers: 1\'s PNG bytes; Cancel stops both workers and the pool works afterwards', async () => {
  const ctx = await browser({ webgpu: false });
  try {
    const page = await harness(ctx, srv.url);
    const r = await page.evaluate(async (model) => {
      const { Upscaler } = await import('/client.js');
      // A 40x40 RGBA photo in tiles of 24 px (16 tiles): the blend, the alpha and the PNG.
      const blob = await (await fetch('/fixtures/realesrgan/coffee_rgba_40.png')).blob();
      const opts = { tile: 24, overlap: 8 };
      const bytes = async (b) => Array.from(new Uint8Array(await b.arrayBuffer()));
      const one = await Upscaler.load(model, { workers: 1, backend: 'cpu' });
      const single = await bytes(await one.upscale(blob, opts));
      const two = await Upscaler.load(model, { workers: 2, backend: 'cpu' });
      const texts = [];
      let most = 0;
      const pooled = await bytes(await two.upscale(blob, { ...opts, onProgress: (p) => { texts.push(p.text); most = Math.max(most, p.running ?? 0); } }));
      // Cancel once both workers run tiles (8 px tiles: 100 of them).
      const controller = new AbortController();
      let cancel;
      const t0 = performance.now();
      try {
        await two.upscale(blob, { tile: 8, overlap: 2, signal: controller.signal, onProgress: (p) => { if (p.running === 2 && p.done >= 2) controller.abort(); } });
        cancel = 'resolved';
      } catch (e) { cancel = e.message; }
      const cancelMs = performance.now() - t0;
      const again = await bytes(await two.upscale(blob, opts));
      // 'auto': one per core, within half the device's memory at WORKER_BYTES each, at most 8.
      const { autoWorkers } = await import('/client.js');
      const auto = [[2, 8], [16, 8], [16, 1], [16, 2], [4, undefined], [0, undefined]].map(([hardwareConcurrency, deviceMemory]) => autoWorkers({ hardwareConcurrency, deviceMemory }));
      let bad;
      try { await Upscaler.load(model, { workers: 0 }); bad = 'resolved'; } catch (e) { bad = e.message; }
      return { workers: [one.workers, two.workers], single, pooled, again, most, texts, cancel, cancelMs, auto, bad };
    }, COMPACT);
    console.log(`pool: ${r.single.length} bytes, most tiles at once ${r.most}, cancel ${r.cancel} after ${r.cancelMs.toFixed(0)} ms; e.g. ${r.texts.slice(-4).join(' | ')}`);
    assert.deepEqual(r.workers, [1, 2]);
    assert.ok(r.most === 2, 'both workers ran tiles at once');
    assert.ok(Buffer.compare(Buffer.from(r.pooled), Buffer.from(r.single)) === 0, 'workers: 2 gives the same PNG bytes as workers: 1');
    assert.ok(r.texts.some((t) => /^Upscaling: \d+ of 16 tiles done, 2 at once/.test(t)), r.texts.join(' | '));
    assert.equal(r.cancel, 'cancelled');
    assert.ok(Buffer.compare(Buffer.from(r.again), Buffer.from(r.single)) === 0, 'after a cancel, the pool gives the same bytes again');
    assert.deepEqual(r.auto, AUTO, 'autoWorkers for (cores, GiB) = (2, 8), (16, 8), (16, 1), (16, 2), (4, ?), (?, ?)');
    assert.equal(r.bad, "workers must be 'auto' or a whole number of at least 1, not 0");
  } finally {
    await ctx.close();
  }
});
