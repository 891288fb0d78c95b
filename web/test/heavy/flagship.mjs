// The flagship in the browser (heavy, outside CI): the full-size PiSA-SR architecture (SD
// 2.1-base UNet + VAE with both LoRAs; random weights in the official layout, 1.9 GB of f16
// shards made by scripts/bench-pisa-sr-fullsize.sh) loads in headless Chromium with a peak
// wasm memory ≤ 256 MiB and upscales a 32x32 photo to 128x128, compared with the native CLI.
//
//   scripts/bench-pisa-sr-fullsize.sh   (once: makes $WORK/model; needs the torch venv)
//   npm --prefix web run build && node web/test/heavy/flagship.mjs
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { browser, harness, onestep, scratch, server } from '../helpers.mjs';

const cache = process.env.ONESTEP_CACHE ?? join(homedir(), '.cache', 'onestep-sr');
// MODEL: another converted model dir (the q8 one: `onestep convert quantize`, issue 16).
const model = process.env.MODEL ?? join(process.env.WORK ?? join(cache, 'bench-sd'), 'model');
if (!existsSync(join(model, 'manifest.json'))) throw new Error(`${model} is missing: run scripts/bench-pisa-sr-fullsize.sh first`);
const backend = process.env.BACKEND ?? 'webgpu';
// LOAD_ONLY=1: the load and its memory only (2 minutes instead of 17 on SwiftShader).
const loadOnly = process.env.LOAD_ONLY === '1';
// ONE_LOAD=1: load once, from the network (q8 on SwiftShader: 9 minutes a load).
const oneLoad = process.env.ONE_LOAD === '1';
// The model is loaded twice: from the network (into IndexedDB), then, after free(), from
// IndexedDB alone (no shard requests): the second time is a returning visitor's load.

const out = scratch();
let t = Date.now();
if (!loadOnly) onestep('upscale', 'tests/fixtures/realesrgan/chelsea_32.png', '-o', `${out}/native.png`, '--model', model, '--device', 'cpu', '--process-size', '128');
console.log(`native CLI (CPU backend, f32): ${((Date.now() - t) / 1000).toFixed(1)} s`);
const srv = await server({ '/big/': model, '/out/': out });
const ctx = await browser();
try {
  const page = await harness(ctx, srv.url);
  page.setDefaultTimeout(0);
  const r = await page.evaluate(async ({ backend, loadOnly, oneLoad }) => {
    const mem = () => window.wasmMemory.buffer.byteLength;
    let maxDuringLoad = 0;
    const load = () => window.pkg.Upscaler.load('/big/manifest.json', {
      backend,
      onProgress: () => { maxDuringLoad = Math.max(maxDuringLoad, mem()); },
    });
    const tn = performance.now();
    if (!oneLoad) (await load()).free();
    const t0 = performance.now();
    const up = await load();
    const t1 = performance.now();
    const loads = oneLoad ? { networkLoadS: (t1 - t0) / 1000 } : { networkLoadS: (t0 - tn) / 1000, loadS: (t1 - t0) / 1000 };
    if (loadOnly) return { info: up.info, ...loads, wasmMiBAfterLoad: maxDuringLoad / 1048576, wasmMiBPeak: mem() / 1048576 };
    const img = await window.pixels('/fixtures/realesrgan/chelsea_32.png');
    const result = await up.upscale(img, { processSize: 128 });
    const t2 = performance.now();
    return {
      info: up.info, size: [result.width, result.height],
      diff: window.diff(result, await window.pixels('/out/native.png')),
      ...loads, upscaleS: (t2 - t1) / 1000,
      wasmMiBAfterLoad: maxDuringLoad / 1048576, wasmMiBPeak: mem() / 1048576,
    };
  }, { backend, loadOnly, oneLoad });
  // Every shard was fetched once, by the first load: the second read IndexedDB only.
  const shards = JSON.parse(readFileSync(join(model, 'manifest.json'), 'utf8')).shards;
  r.shardRequests = shards.reduce((n, s) => n + srv.requests(`/big/${s.file}`), 0);
  r.shards = shards.length;
  console.log(JSON.stringify(r));
  assert.equal(r.shardRequests, r.shards, 'each shard fetched once');
  if (loadOnly) { assert.ok(r.wasmMiBPeak <= 256, `peak wasm memory ${r.wasmMiBPeak} MiB`); process.exit(0); }
  assert.deepEqual(r.size, [128, 128]);
  assert.ok(r.wasmMiBPeak <= 256, `peak wasm memory ${r.wasmMiBPeak} MiB`);
  assert.ok(r.diff.max <= 1, `max difference ${r.diff.max} levels (${r.diff.n} values)`);
  console.log('flagship: ok');
} finally {
  await ctx.close();
  await srv.close();
}
