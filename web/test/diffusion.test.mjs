// The diffusion models in the browser (tiny fixture weights, random, made by the committed
// generator): PiSA-SR default and adjustable, adjust(), and OSEDiff against the native CLI.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { browser, harness, onestep, scratch, server } from './helpers.mjs';

const PHOTO = 'tests/fixtures/sd/lr.png';
let srv, dir;

before(async () => {
  dir = scratch();
  for (const method of ['pisa-sr', 'osediff']) {
    const lora = method === 'pisa-sr' ? 'pisa_sr.pkl' : 'osediff.pkl';
    onestep('convert', 'sd', '--base', 'tests/fixtures/sd', '--lora', `tests/fixtures/sd/${lora}`, '--method', method, '--out', `${dir}/${method}`);
  }
  const run = (model, out, ...extra) =>
    onestep('upscale', PHOTO, '-o', `${dir}/${out}`, '--model', `${dir}/${model}`, '--device', 'cpu', '--process-size', '64', ...extra);
  run('pisa-sr', 'pisa_default.png');
  run('pisa-sr', 'pisa_p05_s15.png', '--lambda-pix', '0.5', '--lambda-sem', '1.5');
  run('pisa-sr', 'pisa_p12_s03_wavelet.png', '--lambda-pix', '1.2', '--lambda-sem', '0.3', '--color-fix', 'wavelet');
  run('osediff', 'osediff.png');
  srv = await server({ '/sd/': dir });
});
after(() => srv.close());

for (const webgpu of [true, false]) {
  test(`${webgpu ? 'WebGPU' : 'CPU fallback'}: PiSA-SR (default, adjustable, adjust) and OSEDiff match the native CLI within 1 level`, async () => {
    const ctx = await browser({ webgpu });
    try {
      const page = await harness(ctx, srv.url);
      const r = await page.evaluate(async (webgpu) => {
        const img = await window.pixels('/fixtures/sd/lr.png');
        const ref = (f) => window.pixels(`/sd/${f}`);
        const backend = webgpu ? 'webgpu' : 'auto';
        const pisa = await window.pkg.Upscaler.load('/sd/pisa-sr/manifest.json', { backend });
        const out = {};
        out.backend = pisa.info.backend;
        out.default = window.diff(await pisa.upscale(img, { processSize: 64 }), await ref('pisa_default.png'));
        out.adjustable = window.diff(await pisa.upscale(img, { processSize: 64, lambdaPix: 0.5, lambdaSem: 1.5 }), await ref('pisa_p05_s15.png'));
        // adjust() re-renders the kept predictions: the same image as a fresh run at (1, 1) ...
        out.adjustBack = window.diff(await pisa.adjust(1, 1), await ref('pisa_default.png'));
        // A slider's preview: one region only, at the new lambdas; then the exact whole image
        // as a PNG Blob (the same code on either backend: checked on the CPU, the faster).
        if (!webgpu) {
          const region = await pisa.adjustRegion(0.5, 1.5, { x: 8, y: 16, width: 40, height: 24 });
          out.region = [region.constructor.name, region.width, region.height];
          try { await pisa.adjustRegion(0.5, 1.5, { x: 60, y: 0, width: 40, height: 8 }); out.badRegion = 'resolved'; } catch (e) { out.badRegion = e.message; }
          const png = await pisa.adjust(0.5, 1.5, { output: 'png' });
          out.adjustPng = [png.constructor.name, png.type, png.size > 0];
        }
        // ... and a run at other lambdas with the wavelet fix.
        out.wavelet = window.diff(await pisa.upscale(img, { processSize: 64, lambdaPix: 1.2, lambdaSem: 0.3, colorFix: 'wavelet' }), await ref('pisa_p12_s03_wavelet.png'));
        // Cancellation between UNet tiles (4-latent tiles: several of them), the abort coming
        // as a later task as a worker's message would; the Upscaler works afterwards.
        const ac = new AbortController();
        out.unet = [0, 0];
        try {
          await pisa.upscale(img, { processSize: 64, latentTile: 4, latentOverlap: 2, signal: ac.signal, onProgress: (p) => {
            if (p.stage !== 'unet') return;
            out.unet = [p.done, p.total];
            if (p.done === 1) setTimeout(() => ac.abort(), 0);
          } });
          out.cancel = 'resolved';
        } catch (e) { out.cancel = e.message; }
        out.afterCancel = window.diff(await pisa.upscale(img, { processSize: 64 }), await ref('pisa_default.png'));
        try { await pisa.upscale(img, { latentTile: 4, latentOverlap: 4 }); out.badTile = 'resolved'; } catch (e) { out.badTile = e.message; }
        const ose = await window.pkg.Upscaler.load('/sd/osediff/manifest.json', { backend });
        out.osediff = window.diff(await ose.upscale(img, { processSize: 64 }), await ref('osediff.png'));
        try { await ose.adjust(1, 1); out.oseAdjust = 'resolved'; } catch (e) { out.oseAdjust = e.message; }
        return out;
      }, webgpu);
      console.log(JSON.stringify(r));
      assert.equal(r.backend, webgpu ? 'webgpu' : 'cpu');
      assert.equal(r.cancel, 'cancelled');
      assert.ok(r.unet[1] >= 4 && r.unet[0] < r.unet[1], `stopped after UNet tile ${r.unet[0]} of ${r.unet[1]}`);
      assert.match(r.badTile, /latentOverlap must be smaller than latentTile/);
      for (const k of ['default', 'adjustable', 'adjustBack', 'wavelet', 'osediff', 'afterCancel']) {
        assert.ok(r[k].max <= 1, `${k}: max difference ${r[k].max} levels (${r[k].n} values)`);
      }
      assert.match(r.oseAdjust, /adjust\(\) needs a PiSA-SR model/);
      if (!webgpu) {
        assert.deepEqual(r.region, ['ImageData', 40, 24]);
        assert.match(r.badRegion, /is not inside the \d+x\d+ result/);
        assert.deepEqual(r.adjustPng, ['Blob', 'image/png', true]);
      }
    } finally {
      await ctx.close();
    }
  });
}
