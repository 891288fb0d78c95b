// A long session, short enough for CI (memory.mjs; heavy/long-session.mjs is the recorded
// 100-upscale version): 5 load / evict cycles of the compact models alternating the CPU
// fallback and WebGPU (SwiftShader), 21 upscales of mixed sizes with a cancel in each cycle.
// Every result equals the session's first for that input, model and backend, and once warm
// nothing grows beyond memory.mjs's margins.
import { test } from 'node:test';
import { MARGIN, SHORT, checkLevels, formatLevels, longSession } from './memory.mjs';

test('a long session does not grow: wasm heap, wasm memory, GPU pool, page and worker JS heaps', { timeout: 240_000 }, async () => {
  const t0 = Date.now();
  const r = await longSession({ cycles: 5, webgpu: SHORT });
  const rows = checkLevels(r, MARGIN);
  console.log(`${r.samples.length} upscales in 5 cycles: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  console.log(formatLevels(rows));
});
