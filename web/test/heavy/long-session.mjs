// The long session, recorded (outside CI; docs/reliability.md has the numbers): 100 upscales
// in 20 load / evict cycles (memory.mjs), with the CI test's margins.
//
//   npm --prefix web run build && node web/test/heavy/long-session.mjs
import { MARGIN, checkLevels, formatLevels, longSession, mib } from '../memory.mjs';

const t0 = Date.now();
const r = await longSession({
  cycles: 20,
  log: (s) => console.log(`${s.run} ${s.backend} ${s.model} ${s.image.split('/').pop()} ${s.outcome} ${s.ms} ms: heap ${mib(s.heapBytes)}, wasm ${mib(s.wasmBytes)}, gpu ${s.gpu ? mib(s.gpu.bytesReserved) : '–'}, page ${mib(s.page)}, worker ${mib(s.worker)} MiB`),
});
console.log(`${r.samples.length} upscales in 20 cycles: ${((Date.now() - t0) / 1000).toFixed(0)} s`);
console.log(formatLevels(checkLevels(r, MARGIN)));
