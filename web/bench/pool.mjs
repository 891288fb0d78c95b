// The worker pool on the CPU path: Real-ESRGAN x4plus on a 256x192 photo (astronaut_256.png,
// its middle 192 rows) in headless Chromium without WebGPU, `workers: 1` against `workers: N`
// (default 2) through the worker client, in one browser session. ROUNDS rounds (default 3)
// alternate the two after a warm-up each; medians, ranges and the per-round ratio are printed,
// and every PNG must be the same bytes.
//
//   node web/bench/pool.mjs            (after npm --prefix web run build; ROUNDS=3 WORKERS=2
//                                       MODEL=realesrgan-x4plus)
import { browser, harness, server } from '../test/helpers.mjs';

const rounds = Number(process.env.ROUNDS ?? 3);
const workers = Number(process.env.WORKERS ?? 2);
// MODEL=realesr-animevideov3-x4 (the compact model) for a quick check of the pool itself.
const model = `/models/${process.env.MODEL ?? 'realesrgan-x4plus'}/manifest.json`;
const srv = await server();
const ctx = await browser({ webgpu: false });
try {
  const page = await harness(ctx, srv.url);
  page.setDefaultTimeout(0);
  page.on('console', (m) => m.text().startsWith('round') && console.log(m.text()));
  const r = await page.evaluate(async ({ rounds, workers, model }) => {
    const { Upscaler, memoryStats } = await import('/client.js');
    const full = await window.pixels('/fixtures/realesrgan/astronaut_256.png');
    // An opaque 256x192 photo: the middle rows.
    const image = new ImageData(new Uint8ClampedArray(full.data.buffer.slice(32 * 256 * 4, 224 * 256 * 4)), 256, 192);
    const hash = async (blob) => Array.from(new Uint8Array(await crypto.subtle.digest('SHA-256', await blob.arrayBuffer()))).map((b) => b.toString(16).padStart(2, '0')).join('');
    const times = { 1: [], [workers]: [] };
    const hashes = new Set();
    // One model in the workers at a time: each side loads (from the cache) before its run;
    // the load is not timed.
    const run = async (n, timed) => {
      const up = await Upscaler.load(model, { backend: 'cpu', workers: n });
      const t0 = performance.now();
      const png = await up.upscale(image, { output: 'png' });
      const ms = performance.now() - t0;
      hashes.add(await hash(png));
      if (timed) times[n].push(ms);
      console.log(`round: workers ${n} (${up.workers} used), ${(ms / 1000).toFixed(1)} s${timed ? '' : ' (warm-up)'}`);
      return up.workers;
    };
    const used = [await run(1, false), await run(workers, false)];
    for (let i = 0; i < rounds; i++) {
      await run(1, true);
      await run(workers, true);
    }
    // What each worker of the pool holds at its peak (the wasm Memory never shrinks).
    const memory = [];
    for (let k = 0; k < workers; k++) memory.push((await memoryStats(k)).wasmBytes);
    return { times, hashes: [...hashes], used, memory };
  }, { rounds, workers, model });
  const med = (v) => [...v].sort((a, b) => a - b)[v.length >> 1];
  const a = r.times[1], b = r.times[workers];
  const ratios = a.map((v, i) => b[i] / v);
  console.log(JSON.stringify(r));
  console.log(`peak wasm memory per worker (MiB): ${r.memory.map((b) => (b / 2 ** 20).toFixed(0)).join(', ')}`);
  console.log(`workers used: ${r.used.join(' / ')}; distinct PNGs: ${r.hashes.length} (${r.hashes.length === 1 ? 'same bytes' : 'BYTES DIFFER'})`);
  console.log('| workers | median (s) | range (s) |');
  console.log('|---|---|---|');
  for (const [n, v] of [[1, a], [workers, b]]) console.log(`| ${n} | ${(med(v) / 1000).toFixed(1)} | ${(Math.min(...v) / 1000).toFixed(1)}–${(Math.max(...v) / 1000).toFixed(1)} |`);
  console.log(`${workers} / 1: ${(med(b) / med(a)).toFixed(2)} of the time (rounds: ${ratios.map((x) => x.toFixed(2)).join(', ')})`);
  if (r.hashes.length !== 1) process.exitCode = 1;
} finally {
  await ctx.close();
  await srv.close();
}
