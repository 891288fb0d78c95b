// A long session through the worker client, for long-session.test.mjs (short, in CI) and
// heavy/long-session.mjs (100 upscales, 20 load / evict cycles, recorded in
// docs/reliability.md): load / evict cycles of the compact models alternating the CPU
// fallback and WebGPU, upscales of mixed sizes with cancels among them. After each run the
// worker's wasm heap (live bytes), its wasm Memory, burn's WebGPU pool and the JS heaps of the
// page and the worker (after a forced GC, through the DevTools protocol) are read.
import assert from 'node:assert/strict';
import { browser, harness, server } from './helpers.mjs';

// A cycle's runs: mixed sizes (one RGBA), and a cancel of the 80x48 photo cut into 32 px
// tiles (several tiles) at its first step. SHORT is for WebGPU in CI: SwiftShader takes
// 5-19 s per run of these sizes.
const CANCEL = '/fixtures/realesrgan/chelsea_80x48.png';
const SMALL = '/fixtures/realesrgan/chelsea_16.png';
export const FULL = [SMALL, '/fixtures/realesrgan/coffee_rgba_40.png', CANCEL, '/fixtures/realesrgan/anime_64x48.png', '/fixtures/realesrgan/astronaut_64.png'];
export const SHORT = [SMALL, CANCEL, SMALL];
const MODELS = ['realesr-animevideov3-x4', 'realesr-animevideov3-x2', 'realesr-animevideov3-x3'];

/// The page's and the worker's JS heaps after a forced GC. The worker is reached through a
/// non-flattened DevTools session (playwright opens CDP sessions on pages only).
async function heapReader(ctx, page) {
  const cdp = await ctx.newCDPSession(page);
  const { targetInfos } = await cdp.send('Target.getTargets');
  const workers = targetInfos.filter((t) => t.type === 'worker');
  assert.equal(workers.length, 1, 'one worker');
  const { sessionId } = await cdp.send('Target.attachToTarget', { targetId: workers[0].targetId, flatten: false });
  const waiting = new Map();
  let next = 1;
  cdp.on('Target.receivedMessageFromTarget', (e) => {
    const m = JSON.parse(e.message);
    waiting.get(m.id)?.(m.result);
    waiting.delete(m.id);
  });
  const inWorker = (method) => new Promise((ok) => {
    const id = next++;
    waiting.set(id, ok);
    cdp.send('Target.sendMessageToTarget', { sessionId, message: JSON.stringify({ id, method }) });
  });
  return async () => {
    await cdp.send('HeapProfiler.collectGarbage');
    await inWorker('HeapProfiler.collectGarbage');
    return { page: (await cdp.send('Runtime.getHeapUsage')).usedSize, worker: (await inWorker('Runtime.getHeapUsage')).usedSize };
  };
}

/// Runs `cycles` load / evict cycles, alternating the CPU fallback (FULL) and WebGPU (`webgpu`,
/// FULL or SHORT); returns every sample ({ run, cycle, backend, model, image, cancel, outcome,
/// ms, heapBytes, wasmBytes, gpu, page, worker }) and the level before any model was loaded.
export async function longSession({ cycles, webgpu = FULL, log = () => {} }) {
  const srv = await server();
  const ctx = await browser({ webgpu: true });
  try {
    const page = await harness(ctx, srv.url);
    await page.evaluate(async (images) => {
      const client = await import('/client.js');
      window.client = client;
      window.blobs = {};
      for (const u of [...images]) window.blobs[u] = await (await fetch(u)).blob();
      // Each result's SHA-256: the same input, model and backend must give the same bytes
      // all session long.
      window.step = async ({ image, cancel }) => {
        const ac = new AbortController();
        const t0 = performance.now();
        const opts = cancel
          ? { tile: 32, overlap: 8, signal: ac.signal, onProgress: (p) => { if (p.stage === 'upscale' && (p.done || p.part)) ac.abort(); } }
          : {};
        try {
          const png = await window.up.upscale(window.blobs[image], opts);
          const hash = new Uint8Array(await crypto.subtle.digest('SHA-256', await png.arrayBuffer()));
          return { outcome: 'done', hash: Array.from(hash, (b) => b.toString(16).padStart(2, '0')).join(''), ms: performance.now() - t0 };
        } catch (e) {
          return { outcome: e.message, ms: performance.now() - t0 };
        }
      };
    }, FULL);
    // The worker starts with the first call; its level before any model.
    const start = await page.evaluate(() => window.client.memoryStats());
    const heaps = await heapReader(ctx, page);
    const samples = [];
    const before = { ...start, ...(await heaps()) };
    const hashes = new Map();
    let run = 0;
    for (let cycle = 0; cycle < cycles; cycle++) {
      const backend = cycle % 2 ? 'webgpu' : 'cpu';
      const model = MODELS[cycle % MODELS.length];
      const url = `/models/${model}/manifest.json`;
      const info = await page.evaluate(async ({ url, backend }) => {
        // One worker: the heaps read are that worker's (the pool's are exact.test.mjs's).
        window.up = await window.client.Upscaler.load(url, { backend, workers: 1 });
        return window.up.info;
      }, { url, backend });
      assert.equal(info.backend, backend);
      for (const image of backend === 'webgpu' ? webgpu : FULL) {
        const cancel = image === CANCEL;
        const r = await page.evaluate((a) => window.step(a), { image, cancel });
        if (r.outcome === 'done') {
          const key = `${image} ${model} ${backend}`;
          if (!hashes.has(key)) hashes.set(key, r.hash);
          assert.equal(r.hash, hashes.get(key), `run ${run}: ${key} gave other bytes than before`);
        } else {
          assert.ok(cancel && r.outcome === 'cancelled', `run ${run} (${image}, ${model}, ${backend}): ${r.outcome}`);
        }
        const s = { run, cycle, backend, model, image, cancel, outcome: r.outcome, ms: Math.round(r.ms), ...(await page.evaluate(() => window.client.memoryStats())), ...(await heaps()) };
        samples.push(s);
        log(s);
        run++;
      }
      assert.equal(await page.evaluate((u) => window.client.Upscaler.evict(u), url), true);
    }
    assert.ok(samples.some((s) => s.outcome === 'cancelled'), 'a cancel stopped a run');
    return { start: before, samples };
  } finally {
    await ctx.close();
    await srv.close();
  }
}

const MiB = 1048576;
export const mib = (n) => (n / MiB).toFixed(2);

/// How much each measure may grow after the first cycle on a backend. The live wasm heap and
/// both JS heaps show a leak of models, results or listeners within a few runs; the wasm
/// Memory and burn's WebGPU pool keep pages for reuse.
export const MARGIN = { heapBytes: 1 * MiB, wasmBytes: 8 * MiB, page: 1 * MiB, worker: 2 * MiB, gpuInUse: 1 * MiB, gpuReserved: 16 * MiB };

/// Per backend: the level after its first run and after its first cycle once both backends
/// have started (every image seen, kernels compiled: the CPU's second cycle, WebGPU's first),
/// and the last one; asserts that the last stays within `margin` of the warm one. Returns a
/// table of the numbers.
export function checkLevels({ start, samples }, margin) {
  const rows = [];
  for (const backend of ['cpu', 'webgpu']) {
    const mine = samples.filter((s) => s.backend === backend);
    const warmCycle = mine.find((s) => s.cycle >= 1).cycle;
    const firstCycle = mine.filter((s) => s.cycle === warmCycle);
    const [first, warm, last] = [mine[0], firstCycle[firstCycle.length - 1], mine[mine.length - 1]];
    const keys = ['heapBytes', 'wasmBytes', 'page', 'worker', ...(backend === 'webgpu' ? ['gpuInUse', 'gpuReserved'] : [])];
    const get = (s, k) => (k === 'gpuInUse' ? s.gpu?.bytesInUse : k === 'gpuReserved' ? s.gpu?.bytesReserved : s[k]);
    for (const k of keys) {
      rows.push({ backend, measure: k, start: get(start, k), firstRun: get(first, k), firstCycle: get(warm, k), final: get(last, k), margin: margin[k] });
      assert.ok(get(last, k) - get(warm, k) <= margin[k],
        `${backend} ${k}: ${mib(get(warm, k))} MiB after cycle ${warmCycle}, ${mib(get(last, k))} MiB at the end (margin ${mib(margin[k])} MiB)`);
    }
  }
  return rows;
}

/// The table in MiB, for the log and docs/reliability.md.
export function formatLevels(rows) {
  const f = (v) => (v === undefined ? '–' : mib(v));
  return ['| backend | measure (MiB) | start | after the first run | warm (after its first cycle with both backends started) | final | margin |', '|---|---|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.backend} | ${r.measure} | ${f(r.start)} | ${f(r.firstRun)} | ${f(r.firstCycle)} | ${f(r.final)} | ${f(r.margin)} |`)].join('\n');
}
