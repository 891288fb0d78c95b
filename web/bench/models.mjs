// The browser's CPU fallback (burn's CPU backend in wasm, SIMD128, one thread) on every GAN
// model of the catalog: one photo, Blob in → PNG Blob out (decode, model, encode: what the
// page runs), best of RUNS after one warm-up run, the model loaded once per model.
//
//   node web/bench/models.mjs                         (after npm --prefix web run build)
//   IMAGE=tests/fixtures/realesrgan/chelsea_32.png MODELS=realesrgan-x4plus node web/bench/models.mjs
//
// Env: IMAGE (default tests/fixtures/realesrgan/chelsea_80x48.png), MODELS (comma-separated
// ids; default the five converted GANs), RUNS (default 3), BACKEND (default cpu).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { browser, harness, root, server } from '../test/helpers.mjs';

const image = process.env.IMAGE ?? 'tests/fixtures/realesrgan/chelsea_80x48.png';
const models = (process.env.MODELS ?? 'realesr-animevideov3-x2,realesr-animevideov3-x3,realesr-animevideov3-x4,realesrgan-x4plus-anime,realesrgan-x4plus').split(',');
const runs = Number(process.env.RUNS ?? 3);
const backend = process.env.BACKEND ?? 'cpu';
for (const m of models) if (!existsSync(join(root, 'models', m, 'manifest.json'))) throw new Error(`models/${m} is not converted: run scripts/fetch-models.sh`);
if (!image.startsWith('tests/fixtures/')) throw new Error('IMAGE must be under tests/fixtures/ (the server serves it as /fixtures/)');

const srv = await server();
const ctx = await browser({ webgpu: backend !== 'cpu' });
try {
  const page = await harness(ctx, srv.url);
  const rows = [];
  for (const model of models) {
    const r = await page.evaluate(async ({ model, file, runs, backend }) => {
      const up = await window.pkg.Upscaler.load(`/models/${model}/manifest.json`, { backend });
      const blob = await (await fetch(file)).blob();
      let png;
      png = await up.upscale(blob); // warm-up (allocation; shader compilation on WebGPU)
      const t = [];
      for (let i = 0; i < runs; i++) {
        const t0 = performance.now();
        png = await up.upscale(blob);
        t.push(performance.now() - t0);
      }
      const bm = await createImageBitmap(png);
      const info = up.info;
      up.free();
      return { info, ms: t, size: [bm.width, bm.height] };
    }, { model, file: `/${image.replace(/^tests\//, '')}`, runs, backend });
    const best = Math.min(...r.ms);
    rows.push({ model, architecture: r.info.architecture, backend: r.info.backend, out: r.size.join('x'), best, all: r.ms.map((x) => Math.round(x)) });
    console.log(JSON.stringify(rows.at(-1)));
  }
  console.log(`\n${image.split('/').pop()}, ${backend}, best of ${runs} after a warm-up (Chromium ${ctx.browser()?.version() ?? ''}):\n`);
  console.log('| model | architecture | output | best (ms) |');
  console.log('|---|---|---|---|');
  for (const r of rows) console.log(`| ${r.model} | ${r.architecture} | ${r.out} | ${r.best.toFixed(0)} |`);
} finally {
  await ctx.close();
  await srv.close();
}
