// Our Real-ESRGAN x4plus in Chromium against onnxruntime-web on the same weights and the same
// tile (a 16x16 input = one 36x36 tile after the 10 px padding), in one browser session:
// WebGPU vs ORT's WebGPU execution provider, our CPU fallback vs ORT's wasm provider.
// Single-threaded wasm on both sides (the page is not cross-origin isolated). RUNS rounds
// (default 5) alternate the two sides after a warm-up each; medians and the range of the
// per-round ratios are printed.
//
//   python web/bench/export_onnx.py models/realesrgan-x4plus $ONESTEP_CACHE/bench/realesrgan-x4plus-36.onnx
//   node web/bench/ort.mjs            (after npm --prefix web run build)
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { browser, harness, root, server } from '../test/helpers.mjs';

const cache = process.env.ONESTEP_CACHE ?? join(homedir(), '.cache', 'onestep-sr');
const onnx = process.env.ONNX ?? join(cache, 'bench', 'realesrgan-x4plus-36.onnx');
if (!existsSync(onnx)) throw new Error(`${onnx} is missing: run web/bench/export_onnx.py (see the header)`);
const runs = Number(process.env.RUNS ?? 5);
// PATHS=cpu (or webgpu) runs one pair only: SwiftShader makes the WebGPU pair take minutes.
const paths = (process.env.PATHS ?? 'webgpu,cpu').split(',');

const srv = await server({ '/ort/': join(root, 'web', 'node_modules', 'onnxruntime-web', 'dist'), '/onnx/': join(onnx, '..') });
const ctx = await browser();
try {
  const page = await harness(ctx, srv.url);
  const r = await page.evaluate(async ({ file, runs, paths }) => {
    const ort = await import('/ort/ort.all.min.mjs');
    ort.env.wasm.wasmPaths = '/ort/';
    ort.env.wasm.numThreads = 1;
    const img = await window.pixels('/fixtures/realesrgan/chelsea_16.png');
    // The same tile our pipeline runs: reflect-padded by 10, planar RGB in 0..1.
    const P = 10, n = 16 + 2 * P, tile = new Float32Array(3 * n * n);
    const refl = (i) => (i < 0 ? -i : i >= 16 ? 30 - i : i);
    for (let y = 0; y < n; y++) for (let x = 0; x < n; x++) for (let c = 0; c < 3; c++)
      tile[(c * n + y) * n + x] = img.data[(refl(y - P) * 16 + refl(x - P)) * 4 + c] / 255;
    // Both sides loaded, one warm-up each (shader compilation, allocation), then RUNS rounds
    // alternating ours and ORT's, so a busy machine slows both alike.
    const out = {};
    for (const backend of paths) {
      const ep = backend === 'cpu' ? 'wasm' : backend;
      const up = await window.pkg.Upscaler.load('/models/realesrgan-x4plus/manifest.json', { backend });
      const s = await ort.InferenceSession.create(`/onnx/${file}`, { executionProviders: [ep] });
      const feeds = { input: new ort.Tensor('float32', tile, [1, 3, n, n]) };
      let mine, y;
      const oursRun = async () => { mine = await up.upscale(img); };
      const ortRun = async () => { const o = await s.run(feeds); y = await o.output.getData(); };
      await oursRun();
      await ortRun();
      const a = [], b = [];
      for (let i = 0; i < runs; i++) {
        let t0 = performance.now(); await oursRun(); a.push(performance.now() - t0);
        t0 = performance.now(); await ortRun(); b.push(performance.now() - t0);
      }
      up.free();
      await s.release();
      const med = (v) => [...v].sort((p, q) => p - q)[v.length >> 1];
      const ratios = a.map((v, i) => v / b[i]);
      out[backend] = { ours_ms: a, ort_ms: b, ours_median: med(a), ort_median: med(b), ratio: med(a) / med(b),
        ratio_range: [Math.min(...ratios), Math.max(...ratios)] };
      // Same weights, same function: ORT's tile cropped and quantised like ours.
      const N = 4 * n, C = 4 * P;
      let max = 0;
      for (let yy = 0; yy < 64; yy++) for (let x = 0; x < 64; x++) for (let c = 0; c < 3; c++) {
        const v = Math.min(255, Math.max(0, Math.trunc(y[(c * N + yy + C) * N + x + C] * 255 + 0.5)));
        max = Math.max(max, Math.abs(v - mine.data[(yy * 64 + x) * 4 + c]));
      }
      out[backend].ort_vs_ours_levels = max;
    }
    return out;
  }, { file: onnx.split('/').pop(), runs, paths });
  console.log(JSON.stringify(r));
  console.log(`| path | ours, median (ms) | onnxruntime-web, median (ms) | ours / ORT (range of rounds) |`);
  console.log(`|---|---|---|---|`);
  const row = (name, x) => x && console.log(`| ${name} | ${x.ours_median.toFixed(0)} | ${x.ort_median.toFixed(0)} | ${x.ratio.toFixed(2)} (${x.ratio_range.map((v) => v.toFixed(2)).join('–')}) |`);
  row('WebGPU (SwiftShader) vs ORT webgpu EP', r.webgpu);
  row('CPU fallback vs ORT wasm EP', r.cpu);
} finally {
  await ctx.close();
  await srv.close();
}
