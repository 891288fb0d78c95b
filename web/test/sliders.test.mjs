// PiSA-SR's live sliders on the page, with the tiny fixture model (random weights in the
// official layout, converted by the CLI as diffusion.test.mjs does) in a test catalog: after
// an upscale, a keyboard move of the pixel slider first shows a preview of the visible region,
// then the whole render replaces it; what Download gives equals a separate CLI run at those
// lambdas within 1 level. CPU fallback.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { browser, onestep, root, scratch, server } from './helpers.mjs';
import { pngDiff } from './png.mjs';
import { assertLayout, assertLocal, download, openPage, recordRequests, screenshot } from './ui.mjs';

const PHOTO = 'tests/fixtures/sd/lr.png';
let srv, dir, ctx, requests;

before(async () => {
  dir = scratch();
  onestep('convert', 'sd', '--base', 'tests/fixtures/sd', '--lora', 'tests/fixtures/sd/pisa_sr.pkl', '--method', 'pisa-sr', '--out', `${dir}/pisa-sr`);
  const run = (out, ...extra) => onestep('upscale', PHOTO, '-o', `${dir}/${out}`, '--model', `${dir}/pisa-sr`, '--device', 'cpu', '--process-size', '64', ...extra);
  run('p10_s10.png', '--lambda-pix', '1', '--lambda-sem', '1');
  run('p08_s10.png', '--lambda-pix', '0.8', '--lambda-sem', '1');
  // A deployment's catalog: the default model, and a PiSA-SR entry with its run options.
  writeFileSync(`${dir}/models.json`, JSON.stringify({ models: [
    { id: 'realesrgan-x4plus', name: 'Real-ESRGAN x4plus', description: 'Photos', architecture: 'rrdbnet', scale: 4, bytes: 33423116, licence: 'BSD-3-Clause', manifest: '/models/realesrgan-x4plus/manifest.json', default: true },
    { id: 'pisa-sr-tiny', name: 'PiSA-SR (tiny test model)', description: 'Diffusion: most detail, slow', architecture: 'pisa-sr', scale: 4, bytes: 0, licence: 'test fixture', manifest: 'pisa-sr/manifest.json', options: { processSize: 64 } },
  ] }));
  srv = await server({ '/sd/': dir });
  ctx = await browser({ webgpu: false });
  requests = recordRequests(ctx);
});
after(async () => {
  await ctx?.close();
  await srv?.close();
});

test('PiSA-SR: a slider move previews the visible region first, then the whole render equals a CLI run at those lambdas', async () => {
  const t0 = Date.now();
  const page = await openPage(ctx, `${srv.url}/?catalog=/sd/models.json`);
  await page.waitForFunction(() => document.querySelectorAll('#model option').length === 2);
  await page.locator('#model').selectOption('pisa-sr-tiny');
  assert.equal(await page.locator('#pisa').isVisible(), true, 'the PiSA-SR controls appear');
  assert.equal(await page.getByRole('button', { name: 'Balanced' }).getAttribute('aria-pressed'), 'true');
  await page.getByLabel('Choose image').setInputFiles(`${root}/${PHOTO}`);
  await page.getByRole('button', { name: 'Upscale', exact: true }).click();
  const link = page.getByRole('link', { name: 'Download', exact: true });
  await link.waitFor({ state: 'visible', timeout: 180_000 });
  const first = await download(page, link);
  const d0 = pngDiff(first.bytes, readFileSync(`${dir}/p10_s10.png`));
  console.log('upscale at (1, 1)', JSON.stringify(d0));
  assert.ok(d0.max <= 1, `first run: max difference ${d0.max}`);
  const t1 = Date.now();

  // Record the render states as they come.
  await page.evaluate(() => {
    window.states = [];
    const r = document.getElementById('render-state');
    new MutationObserver(() => { if (window.states.at(-1) !== r.dataset.state) window.states.push(r.dataset.state); })
      .observe(r, { attributes: true, attributeFilter: ['data-state'] });
    const cmp = document.querySelector('.cmp');
    window.previewSeen = false;
    new MutationObserver(() => { if (cmp.dataset.preview === 'true') window.previewSeen = true; }).observe(cmp, { attributes: true });
  });
  // The keyboard moves the pixel slider: 1.00 → 0.80 in four steps.
  const slider = page.getByLabel(/Pixel fidelity/);
  await slider.focus();
  for (let i = 0; i < 4; i++) await page.keyboard.press('ArrowLeft');
  assert.equal(await slider.inputValue(), '0.8');
  assert.equal(await page.getByRole('button', { name: 'Balanced' }).getAttribute('aria-pressed'), 'false');
  await page.waitForFunction(() => /^Exact at λpix 0\.80, λsem 1\.00$/.test(document.getElementById('render-state').textContent), null, { timeout: 120_000 });
  const states = await page.evaluate(() => window.states);
  console.log('render states', states.join(' → '));
  assert.equal(await page.evaluate(() => window.previewSeen), true, 'a preview was drawn over the result');
  assert.ok(states.indexOf('preview') >= 0 && states.indexOf('preview') < states.lastIndexOf('exact'), `preview before exact: ${states}`);
  assert.equal(states.at(-1), 'exact');
  assert.equal(await page.evaluate(() => document.querySelector('.cmp').dataset.preview), undefined, 'the preview is gone');
  const final = await download(page, link);
  assert.equal(final.name, 'lr_x4.png');
  const d = pngDiff(final.bytes, readFileSync(`${dir}/p08_s10.png`));
  console.log('after the slider, vs a CLI run at (0.8, 1)', JSON.stringify(d));
  assert.ok(d.max <= 1, `max difference ${d.max} levels (${d.n} values)`);
  await screenshot(page, 'pisa-sr-sliders');
  await assertLayout(page, '1440 px, PiSA-SR');
  await page.setViewportSize({ width: 375, height: 812 });
  await assertLayout(page, '375 px, PiSA-SR');
  assertLocal(requests, 'the slider test');
  assert.deepEqual(page.errors, []);
  console.log(`first run ${t1 - t0} ms, slider to exact ${Date.now() - t1} ms`);
});
