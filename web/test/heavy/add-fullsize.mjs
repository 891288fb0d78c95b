// "Add a diffusion model" at full size (heavy, outside CI): the random full-size SD 2.1-base
// folder with pisa_sr.pkl (scripts/bench-pisa-sr-fullsize.sh makes it: $WORK/base) picked in
// the page on the CPU fallback, converted as `--quantize mixed`; its time against the native
// converter's (`onestep convert sd … --quantize mixed`, run here first) and the conversion
// worker's peak wasm memory (goal ≤ 512 MiB). The stored model is then loaded from IndexedDB.
//
//   scripts/bench-pisa-sr-fullsize.sh   (once, ROUNDS=0 is enough: makes $WORK/base)
//   npm --prefix web run build && node web/test/heavy/add-fullsize.mjs
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { browser, cli, scratch, server } from '../helpers.mjs';
import { openPage } from '../ui.mjs';

const cache = process.env.ONESTEP_CACHE ?? join(homedir(), '.cache', 'onestep-sr');
const base = join(process.env.WORK ?? join(cache, 'bench-sd'), 'base');
if (!existsSync(join(base, 'pisa_sr.pkl'))) throw new Error(`${base} is missing: run scripts/bench-pisa-sr-fullsize.sh first`);
const out = scratch();

// The native converter, timed with its peak RSS (GNU time).
let t = Date.now();
execFileSync('/usr/bin/time', ['-v', '-o', `${out}/convert.time`, cli, 'convert', 'sd', '--base', base, '--lora', join(base, 'pisa_sr.pkl'),
  '--quantize', 'mixed', '--out', `${out}/native`], { stdio: ['ignore', 'ignore', 'inherit'] });
const nativeS = (Date.now() - t) / 1000;
const rssKiB = Number(/Maximum resident set size \(kbytes\): (\d+)/.exec(readFileSync(`${out}/convert.time`, 'utf8'))[1]);
console.log(`native convert: ${nativeS.toFixed(1)} s, peak RSS ${(rssKiB / 1024).toFixed(0)} MiB`);

const srv = await server();
const ctx = await browser({ webgpu: false });
try {
  const page = await openPage(ctx, `${srv.url}/`);
  let added = null;
  page.on('console', (m) => { const x = /^onestep: added (.*)$/.exec(m.text()); if (x) added = JSON.parse(x[1]); });
  await page.waitForFunction(() => document.getElementById('model').options.length > 1);
  t = Date.now();
  await page.locator('#add-folder').setInputFiles(base);
  let last = '';
  for (;;) {
    const s = await page.locator('#add-status').textContent();
    if (s !== last) { console.log(`[${((Date.now() - t) / 1000).toFixed(0)} s] ${s}`); last = s; }
    if (/was added|Could not add/.test(s)) break;
    await new Promise((r) => setTimeout(r, 5000));
  }
  assert.match(last, /PiSA-SR was added/);
  const pageS = (Date.now() - t) / 1000;
  const native = JSON.parse(readFileSync(`${out}/native/manifest.json`, 'utf8'));
  const bytes = native.shards.reduce((a, s) => a + s.bytes, 0);
  const peakMiB = added.wasmBytes / 1048576;
  console.log(JSON.stringify({ pageS, nativeS, ratio: pageS / nativeS, peakWasmMiB: peakMiB, nativePeakRssMiB: rssKiB / 1024, storedBytes: added.bytes, nativeBytes: bytes, shards: added.shards }));
  assert.equal(added.bytes, bytes, 'the page stores what the CLI writes');
  assert.ok(peakMiB <= 512, `peak wasm memory ${peakMiB.toFixed(1)} MiB (goal ≤ 512)`);
} finally {
  await ctx.close();
  await srv.close();
}
