// The other Real-ESRGAN models of the catalog in headless Chromium against the native CLI:
// realesr-animevideov3 x4, x3 and x2 (SRVGGNetCompact) on WebGPU (SwiftShader, forced) and on
// the CPU fallback, realesrgan-x4plus-anime (RRDBNet, 6 blocks) on the CPU fallback and, on a
// 16x16 crop, on WebGPU (SwiftShader runs RRDBNet at about 0.5 GFLOP/s). Files in, PNG out,
// every channel within 1 level, the size exact (x2 and x3 models give 2x and 3x). Then the page and the element
// with models of scale 2 and 3: the picker's groups and sizes, output scales never above the
// model's, and `<onestep-upscaler model="realesr-animevideov3-x3" scale="4">` giving x3.
// Format v2 (8-bit weights, dequantized on the device): realesrgan-x4plus-q8 on the CPU
// fallback and realesr-animevideov3-x4 quantized by `onestep convert quantize` on WebGPU give
// the CLI's PNG of that model; the picker and the cache show the quantized size.
// One browser for the whole file: with only SwiftShader, `backend: 'auto'` is the CPU fallback.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { browser, harness, onestep, root, scratch, server } from './helpers.mjs';
import { pngDiff } from './png.mjs';
import { download, openPage } from './ui.mjs';

const ANIME = 'realesrgan/anime_64x48.png';
const RGBA = 'realesrgan/coffee_rgba_40.png';
const SMALL = 'realesrgan/chelsea_16.png';
const QUANTIZED = 'realesr-animevideov3-x4-q8';
// [model, input, backend, output size]. The RGBA case has straight alpha (bicubic, as the CLI).
const CASES = [
  ['realesr-animevideov3-x4', ANIME, 'webgpu', [256, 192]],
  ['realesr-animevideov3-x3', ANIME, 'webgpu', [192, 144]],
  ['realesr-animevideov3-x2', RGBA, 'webgpu', [80, 80]],
  ['realesr-animevideov3-x4', ANIME, 'auto', [256, 192]],
  ['realesr-animevideov3-x3', ANIME, 'auto', [192, 144]],
  ['realesr-animevideov3-x3', RGBA, 'auto', [120, 120]],
  ['realesr-animevideov3-x2', ANIME, 'auto', [128, 96]],
  ['realesrgan-x4plus-anime', ANIME, 'auto', [256, 192]],
  ['realesrgan-x4plus-anime', SMALL, 'webgpu', [64, 64]],
  // Format v2: 8-bit weights dequantized on the device. On WebGPU (WGSL integer ops) the
  // compact model quantized here: x4plus takes minutes on SwiftShader.
  ['realesrgan-x4plus-q8', SMALL, 'auto', [64, 64]],
  [QUANTIZED, SMALL, 'webgpu', [64, 64]],
];
const ref = (model, input) => `${model}_${input.split('/').pop()}`;
const dir = (model) => (model === QUANTIZED ? `${out}/${model}` : `models/${model}`);
const url = (model) => (model === QUANTIZED ? `/out/${model}/manifest.json` : `/models/${model}/manifest.json`);
let srv, out, ctx;

before(async () => {
  out = scratch();
  onestep('convert', 'quantize', 'models/realesr-animevideov3-x4', '--out', `${out}/${QUANTIZED}`, '--quantize', 'q8');
  // The references: the native CLI on burn's CPU backend, one per (model, input).
  const refs = new Map(CASES.map(([model, input]) => [ref(model, input), [model, input]]));
  for (const [model, input] of refs.values()) {
    onestep('upscale', `tests/fixtures/${input}`, '-o', `${out}/${ref(model, input)}`, '--model', dir(model), '--device', 'cpu');
  }
  srv = await server({ '/out/': out });
  ctx = await browser();
});
after(async () => {
  await ctx?.close();
  await srv?.close();
});

test('the compact and anime models give the native CLI\'s PNG within 1 level: WebGPU (SwiftShader) and the CPU fallback', async () => {
  const page = await harness(ctx, srv.url);
  const runs = [];
  for (const [model, input, backend, size] of CASES) {
    const r = await page.evaluate(async ({ manifest, input, backend }) => {
      const t0 = performance.now();
      const up = await window.pkg.Upscaler.load(manifest, { backend });
      const t1 = performance.now();
      const blob = await (await fetch(`/fixtures/${input}`)).blob();
      const stages = new Set();
      const png = await up.upscale(blob, { onProgress: (p) => stages.add(p.stage) });
      const t2 = performance.now();
      const info = up.info;
      up.free();
      return { info, type: png.type, bytes: Array.from(new Uint8Array(await png.arrayBuffer())), stages: [...stages], loadMs: Math.round(t1 - t0), runMs: Math.round(t2 - t1) };
    }, { manifest: url(model), input, backend });
    const d = pngDiff(Buffer.from(r.bytes), readFileSync(`${out}/${ref(model, input)}`));
    const line = { model, input, backend: r.info.backend, scale: r.info.scale, architecture: r.info.architecture, diff: d, loadMs: r.loadMs, runMs: r.runMs };
    console.log(JSON.stringify(line));
    runs.push(line);
    assert.equal(r.type, 'image/png');
    assert.equal(r.info.modelId, model);
    assert.equal(r.info.backend, backend === 'webgpu' ? 'webgpu' : 'cpu', `${model} on ${backend}`);
    // auto with only a software adapter: the CPU, and it says why.
    if (backend === 'auto') assert.match(r.info.notices.join(' '), /software|CPU/);
    assert.equal(r.info.architecture, model.startsWith('realesr-animevideov3') ? 'srvgg' : 'rrdbnet');
    const width = { [RGBA]: 40, [SMALL]: 16 }[input] ?? 64;
    assert.equal(r.info.scale, size[0] / width);
    assert.deepEqual(d.size, size, `${model} ${input} ${backend}: size`);
    assert.ok(d.max <= 1, `${model} ${input} ${backend}: max difference ${d.max} levels over RGBA (${d.n} values differ)`);
    if (input === RGBA) assert.deepEqual(d.channels, [4, 4], 'the alpha channel is kept');
    assert.ok(r.stages.includes('upscale') && r.stages.includes('write'), r.stages.join(','));
  }
  // Above the model's own scale is refused, as the CLI does.
  const refused = await page.evaluate(async () => {
    const up = await window.pkg.Upscaler.load('/models/realesr-animevideov3-x2/manifest.json', { backend: 'cpu' });
    const blob = await (await fetch('/fixtures/realesrgan/anime_64x48.png')).blob();
    try { await up.upscale(blob, { scale: 3 }); return 'resolved'; } catch (e) { return e.message; } finally { up.free(); }
  });
  assert.match(refused, /at most the model's 2/);
  assert.ok(runs.length === CASES.length);
  // The quantized model is cached as its quantized shards: about half of x4plus's 33.4 MB.
  const q8 = JSON.parse(readFileSync(`${root}/models/realesrgan-x4plus-q8/manifest.json`, 'utf8'));
  const total = q8.shards.reduce((n, s) => n + s.bytes, 0);
  const cached = await page.evaluate(async () => (await window.pkg.Upscaler.cached()).find((c) => c.modelId === 'realesrgan-x4plus-q8'));
  assert.equal(q8.format_version, 2);
  assert.ok(total <= 17_500_000, `${total} bytes`);
  assert.deepEqual([cached?.bytes, cached?.complete], [total, true], JSON.stringify(cached));
});

test('the page offers the models in groups with their sizes, and output scales up to the chosen model\'s', async () => {
  onestep('upscale', `tests/fixtures/${ANIME}`, '-o', `${out}/anime_x2_scale1.5.png`, '--model', 'models/realesr-animevideov3-x2', '--device', 'cpu', '--scale', '1.5');
  // A fresh profile: nothing cached, so the sizes to download are what the page shows (the
  // shared context has these models stored by the tests before).
  const fresh = await browser({ webgpu: false });
  const page = await openPage(fresh, `${srv.url}/?model=realesr-animevideov3-x2`);
  await page.waitForFunction(() => document.querySelectorAll('#model option').length > 1);
  const picker = await page.evaluate(() => [...document.querySelectorAll('#model optgroup')].map((g) => ({
    group: g.label, models: [...g.querySelectorAll('option')].map((o) => [o.value, o.textContent]),
  })));
  console.log(JSON.stringify(picker));
  const ids = (group) => picker.find((g) => g.group === group)?.models.map(([id]) => id);
  assert.deepEqual(ids('Photos'), ['realesrgan-x4plus', 'realesrgan-x4plus-q8']);
  assert.deepEqual(ids('Anime and drawings'), ['realesrgan-x4plus-anime', 'realesr-animevideov3-x4', 'realesr-animevideov3-x3', 'realesr-animevideov3-x2']);
  const text = Object.fromEntries(picker.flatMap((g) => g.models));
  assert.match(text['realesr-animevideov3-x2'], /anime video v3 x2 — .*2x.*, 1\.2 MB$/);
  assert.match(text['realesrgan-x4plus-anime'], /x4plus anime — .*, 8\.9 MB$/);
  assert.match(text['realesrgan-x4plus'], /33\.4 MB$/);
  assert.match(text['realesrgan-x4plus-q8'], /x4plus q8 — .*, 17\.3 MB$/);
  const scales = () => page.evaluate(() => [...document.querySelectorAll('#scale option')].map((o) => [o.value, o.textContent]));
  assert.equal(await page.locator('#model').inputValue(), 'realesr-animevideov3-x2');
  assert.deepEqual(await scales(), [['', "x2 (the model's)"], ['1.5', 'x1.5 (downscaled)'], ['1', 'x1 (downscaled)']]);
  assert.match(await page.textContent('#model-info'), /Download 1\.2 MB/);
  // x3: x3 (its own, the default), x2, x1.5, x1; a smaller scale chosen stays when the next
  // model allows it, and one it does not allow goes back to the model's own.
  await page.getByLabel('Model', { exact: true }).selectOption('realesr-animevideov3-x3');
  assert.deepEqual((await scales()).map(([v]) => v), ['', '2', '1.5', '1']);
  await page.getByLabel('Output scale').selectOption('2');
  await page.getByLabel('Model', { exact: true }).selectOption('realesrgan-x4plus');
  assert.deepEqual((await scales()).map(([v]) => v), ['', '3', '2', '1.5', '1']);
  assert.equal(await page.locator('#scale').inputValue(), '2');
  await page.getByLabel('Model', { exact: true }).selectOption('realesr-animevideov3-x2');
  assert.equal(await page.locator('#scale').inputValue(), '');
  // An upscale at x1.5 with the x2 model: the CLI's --scale 1.5, named after the scale.
  await page.getByLabel('Output scale').selectOption('1.5');
  await page.getByLabel('Choose image').setInputFiles(`${root}/tests/fixtures/${ANIME}`);
  await page.getByRole('button', { name: 'Upscale', exact: true }).click();
  const link = page.getByRole('link', { name: 'Download', exact: true });
  await link.waitFor({ state: 'visible', timeout: 60_000 });
  const dl = await download(page, link);
  assert.equal(dl.name, 'anime_64x48_x1.5.png');
  const d = pngDiff(dl.bytes, readFileSync(`${out}/anime_x2_scale1.5.png`));
  assert.deepEqual(d.size, [96, 72]);
  assert.ok(d.max <= 1, `max difference ${d.max} from the CLI`);
  assert.deepEqual(page.errors, []);
  await fresh.close();
});

test('<onestep-upscaler> takes the new model ids; scale="4" on an x3 model gives x3', async () => {
  const page = await openPage(ctx, `${srv.url}/demo.html`);
  const r = await page.evaluate(async () => {
    await customElements.whenDefined('onestep-upscaler');
    const el = document.querySelector('onestep-upscaler');
    el.setAttribute('model', 'realesr-animevideov3-x3');
    el.scale = 4;
    const blob = await (await fetch('/fixtures/realesrgan/anime_64x48.png')).blob();
    const png = await el.upscale(new File([blob], 'anime_64x48.png', { type: 'image/png' }));
    return { bytes: Array.from(new Uint8Array(await png.arrayBuffer())), name: el.value?.name, model: el.shadowRoot.querySelector('.model').textContent };
  });
  const d = pngDiff(Buffer.from(r.bytes), readFileSync(`${out}/${ref('realesr-animevideov3-x3', ANIME)}`));
  assert.deepEqual(d.size, [192, 144]);
  assert.ok(d.max <= 1, `max difference ${d.max} from the CLI`);
  assert.equal(r.name, 'anime_64x48_x3.png');
  assert.match(r.model, /anime video v3 x3/);
  assert.deepEqual(page.errors, []);
  await page.close();
});
