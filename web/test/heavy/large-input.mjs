// The browser's large input, measured (outside CI; docs/reliability.md and docs/browser.md
// have the numbers): a 2000x1500 photo (the committed 256x256 crop enlarged in the page, as a
// JPEG) upscaled x4 to 8000x6000 by the compact model on the CPU fallback through the wasm
// package: time, tiles, the peak wasm Memory and the peak of the live wasm heap. Then one
// whole 192 px tile of Real-ESRGAN x4plus (a 172x172 input plus the 10 px reflection pad) on
// the CPU fallback, to estimate x4plus at 2000x1500 from its tile count. X4PLUS_FULL=1 also
// runs x4plus on the whole 2000x1500 photo (about 35 minutes here).
//
//   npm --prefix web run build && node web/test/heavy/large-input.mjs
import assert from 'node:assert/strict';
import { browser, harness, server } from '../helpers.mjs';

const MiB = 1048576;
const srv = await server();
const ctx = await browser({ webgpu: false });
try {
  const page = await harness(ctx, srv.url);
  page.setDefaultTimeout(0);
  const r = await page.evaluate(async (full) => {
    const photo = async (w, h) => {
      const bm = await createImageBitmap(await (await fetch('/fixtures/realesrgan/astronaut_256.png')).blob());
      const c = new OffscreenCanvas(w, h);
      const g = c.getContext('2d');
      g.imageSmoothingQuality = 'high';
      g.drawImage(bm, 0, 0, w, h);
      return c.convertToBlob({ type: 'image/jpeg', quality: 0.92 });
    };
    // One model run, timed by its progress: the model's tiles apart from reading and writing.
    const run = async (model, blob) => {
      const up = await window.pkg.Upscaler.load(model, { backend: 'cpu' });
      const before = window.pkg.memoryStats();
      let heapPeak = 0, tiles = 0, tStart = 0, tEnd = 0;
      const t0 = performance.now();
      const png = await up.upscale(blob, {
        onProgress: (p) => {
          heapPeak = Math.max(heapPeak, window.pkg.memoryStats().heapBytes);
          if (p.stage === 'upscale' && p.done === 0 && !tStart) tStart = performance.now();
          if (p.stage === 'upscale') { tiles = p.total; if (p.done === p.total) tEnd = performance.now(); }
        },
      });
      const total = performance.now() - t0;
      const after = window.pkg.memoryStats();
      const bm = await createImageBitmap(png);
      const out = { size: [bm.width, bm.height], pngBytes: png.size, tiles, seconds: total / 1000, modelSeconds: (tEnd - tStart) / 1000, before, heapPeak, after };
      up.free();
      return out;
    };
    const big = await photo(2000, 1500);
    const compact = await run('/models/realesr-animevideov3-x4/manifest.json', big);
    const x4plus = await run('/models/realesrgan-x4plus/manifest.json', await photo(172, 172));
    const x4plusFull = full ? await run('/models/realesrgan-x4plus/manifest.json', big) : null;
    return { inputBytes: big.size, compact, x4plus, x4plusFull };
  }, Boolean(process.env.X4PLUS_FULL));
  assert.deepEqual(r.compact.size, [8000, 6000]);
  assert.equal(r.x4plus.tiles, 1);
  // Real-ESRGAN x4plus's tiles at 2000x1500: 192 px with a 32 px overlap over the padded
  // 2020x1520 (the planner's axis_starts).
  const starts = (len, tile, overlap) => { const s = []; for (let i = 0; i * (tile - overlap) + tile < len; i++) s.push(i); return s.length + 1; };
  const tiles = starts(2020, 192, 32) * starts(1520, 192, 32);
  const estimate = tiles * r.x4plus.modelSeconds + (r.compact.seconds - r.compact.modelSeconds);
  const c = r.compact;
  console.log(JSON.stringify(r, null, 1));
  console.log(`2000x1500 JPEG (${(r.inputBytes / MiB).toFixed(2)} MiB) -> 8000x6000 PNG (${(c.pngBytes / MiB).toFixed(1)} MiB), compact x4, CPU fallback: ` +
    `${c.seconds.toFixed(1)} s (${c.tiles} tiles, ${c.modelSeconds.toFixed(1)} s in the model); wasm Memory ${(c.before.wasmBytes / MiB).toFixed(0)} MiB after the load, ` +
    `${(c.after.wasmBytes / MiB).toFixed(0)} MiB peak; live heap ${(c.before.heapBytes / MiB).toFixed(1)} MiB before, ${(c.heapPeak / MiB).toFixed(0)} MiB at most at a progress report, ${(c.after.heapBytes / MiB).toFixed(1)} MiB after`);
  console.log(`x4plus: one 192 px tile ${r.x4plus.modelSeconds.toFixed(1)} s on the CPU fallback; 2000x1500 is ${tiles} tiles: about ${(estimate / 3600).toFixed(1)} h`);
  const f = r.x4plusFull;
  if (f) {
    assert.deepEqual(f.size, [8000, 6000]);
    assert.equal(f.tiles, tiles);
    console.log(`x4plus, the whole 2000x1500 photo on the CPU fallback: ${(f.seconds / 60).toFixed(1)} min (${f.tiles} tiles, ${f.modelSeconds.toFixed(0)} s in the model); ` +
      `wasm Memory ${(f.before.wasmBytes / MiB).toFixed(0)} MiB after the load, ${(f.after.wasmBytes / MiB).toFixed(0)} MiB peak; live heap ${(f.heapPeak / MiB).toFixed(0)} MiB at most at a progress report, ${(f.after.heapBytes / MiB).toFixed(1)} MiB after`);
  }
} finally {
  await ctx.close();
  await srv.close();
}
