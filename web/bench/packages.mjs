// Two builds of the wasm package against each other in one page: by default pkg/cpu/ (CPU
// only) against pkg/ (WebGPU + CPU) on the CPU path. Real-ESRGAN x4plus, RUNS rounds
// (default 5) alternating the two after a warm-up each; medians, the range of the per-round
// ratios (B / A), and whether the two PNGs are the same bytes. IMAGE is a path under
// tests/fixtures/ (default a 64x64 photo); A and B are package folders (another build, e.g.
// a copy of pkg/ from before a change); BACKEND 'webgpu' runs on SwiftShader.
//
//   node web/bench/packages.mjs            (after npm --prefix web run build)
//   A=/tmp/pkg-before B=pkg BACKEND=webgpu MODEL=realesr-animevideov3-x4 node web/bench/packages.mjs
import { resolve } from 'node:path';
import { browser, harness, root, server } from '../test/helpers.mjs';

const runs = Number(process.env.RUNS ?? 5);
const image = process.env.IMAGE ?? 'realesrgan/astronaut_64.png';
const model = process.env.MODEL ?? 'realesrgan-x4plus';
const backend = process.env.BACKEND ?? 'cpu';
const dirs = { a: resolve(root, process.env.A ?? 'pkg'), b: resolve(root, process.env.B ?? 'pkg/cpu') };

const srv = await server({ '/bench-a/': dirs.a, '/bench-b/': dirs.b });
const ctx = await browser({ webgpu: backend === 'webgpu' });
try {
  const page = await harness(ctx, srv.url);
  const r = await page.evaluate(async ({ runs, image, model, backend }) => {
    const blob = await (await fetch(`/fixtures/${image}`)).blob();
    const side = {};
    for (const name of ['a', 'b']) {
      const m = await import(`/bench-${name}/onestep_sr.js`);
      await m.default();
      side[name] = { up: await m.Upscaler.load(`/models/${model}/manifest.json`, { backend }), ms: [] };
      if (side[name].up.info.backend !== backend) throw new Error(`${name} ran on ${side[name].up.info.backend}`);
    }
    const run = async (s) => {
      const t0 = performance.now();
      const png = await s.up.upscale(blob, { output: 'png' });
      s.ms.push(performance.now() - t0);
      return new Uint8Array(await png.arrayBuffer());
    };
    for (const s of Object.values(side)) { await run(s); s.ms.length = 0; }
    let same = true;
    for (let i = 0; i < runs; i++) {
      const a = await run(side.a);
      const b = await run(side.b);
      same &&= a.length === b.length && a.every((v, j) => v === b[j]);
    }
    const med = (v) => [...v].sort((p, q) => p - q)[v.length >> 1];
    const ratios = side.b.ms.map((v, i) => v / side.a.ms[i]);
    return {
      a_ms: side.a.ms, b_ms: side.b.ms, a_median: med(side.a.ms), b_median: med(side.b.ms),
      ratio: med(side.b.ms) / med(side.a.ms), ratio_range: [Math.min(...ratios), Math.max(...ratios)], same_png: same,
    };
  }, { runs, image, model, backend });
  console.log(JSON.stringify(r));
  const f = (v) => v.toFixed(0);
  const name = (d) => (d.startsWith(`${root}/`) ? d.slice(root.length + 1) : d);
  console.log(`| ${model}, ${image}, backend '${backend}' | A ${name(dirs.a)}: median ${f(r.a_median)} ms (${r.a_ms.map(f).join(', ')}) | B ${name(dirs.b)}: median ${f(r.b_median)} ms (${r.b_ms.map(f).join(', ')}) | B / A ${r.ratio.toFixed(3)} (${r.ratio_range.map((v) => v.toFixed(3)).join('–')}) | same PNG: ${r.same_png} |`);
  if (!r.same_png) process.exitCode = 1;
} finally {
  await ctx.close();
  await srv.close();
}
