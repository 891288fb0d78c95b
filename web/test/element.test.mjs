// <onestep-upscaler> on the demo page (one script tag of the built bundle): through its own
// "Choose image" and "Upscale" it gives the same PNG bytes as the upload page for the same
// photo (and the CLI's pixels); its events come in order; upscale() takes a Blob; cancel()
// gives upscale-cancel; it is a form control whose value is the result File. CPU fallback.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { browser, onestep, root, scratch, server } from './helpers.mjs';
import { pngDiff } from './png.mjs';
import { PHOTO, assertLocal, download, openPage, recordRequests } from './ui.mjs';

let srv, out, ctx, requests;

before(async () => {
  out = scratch();
  onestep('upscale', PHOTO, '-o', `${out}/native.png`, '--device', 'cpu');
  srv = await server({ '/out/': out });
  ctx = await browser({ webgpu: false });
  requests = recordRequests(ctx);
});
after(async () => {
  await ctx?.close();
  await srv?.close();
});

test('the element on the demo page: the page\'s bytes, events in order, form value, upscale() and cancel()', async () => {
  const t0 = Date.now();
  // The upload page's Download for the photo.
  const app = await openPage(ctx, `${srv.url}/`);
  await app.getByLabel('Choose image').setInputFiles(`${root}/${PHOTO}`);
  await app.getByRole('button', { name: 'Upscale', exact: true }).click();
  const link = app.getByRole('link', { name: 'Download', exact: true });
  await link.waitFor({ state: 'visible', timeout: 120_000 });
  const fromPage = await download(app, link);
  await app.close();
  const t1 = Date.now();

  const demo = await openPage(ctx, `${srv.url}/demo.html`);
  assert.equal(await demo.evaluate(() => document.querySelectorAll('script[src]').length), 1, 'one script tag');
  await demo.evaluate(() => {
    window.events = [];
    const el = document.querySelector('onestep-upscaler');
    for (const t of ['upscale-start', 'upscale-progress', 'upscale-complete', 'upscale-error', 'upscale-cancel']) {
      // Listened for on the document: the events bubble out of the element.
      document.addEventListener(t, (e) => window.events.push({ type: t, detail: e.detail instanceof Blob ? { blob: e.detail.size, type: e.detail.type } : e.detail }));
    }
    el.addEventListener('upscale-complete', async (e) => { window.blob = Array.from(new Uint8Array(await e.detail.arrayBuffer())); });
  });
  // Its own controls, in its shadow root: the same accessible names as the page.
  await demo.getByLabel('Choose image').setInputFiles(`${root}/${PHOTO}`);
  await demo.getByRole('button', { name: 'Upscale', exact: true }).click();
  await demo.waitForFunction(() => window.blob, null, { timeout: 120_000 });
  const bytes = Buffer.from(await demo.evaluate(() => window.blob));
  assert.ok(bytes.equals(fromPage.bytes), 'the element and the page give the same PNG bytes');
  const d = pngDiff(bytes, readFileSync(`${out}/native.png`));
  assert.ok(d.max <= 1, `max difference ${d.max} from the CLI`);
  const events = await demo.evaluate(() => window.events);
  const types = events.map((e) => e.type);
  console.log(types.join(' '));
  assert.equal(types[0], 'upscale-start');
  assert.equal(types.at(-1), 'upscale-complete');
  assert.ok(types.filter((t) => t === 'upscale-progress').length >= 2, 'progress events');
  assert.deepEqual([...new Set(types)], ['upscale-start', 'upscale-progress', 'upscale-complete']);
  const prog = events.filter((e) => e.type === 'upscale-progress');
  for (const p of prog) {
    for (const k of ['stage', 'done', 'total', 'eta']) assert.ok(k in p.detail, `progress detail has ${k}: ${JSON.stringify(p.detail)}`);
  }
  assert.ok(prog.some((p) => p.detail.stage === 'upscale'), 'an upscale stage');
  assert.deepEqual(events.at(-1).detail, { blob: bytes.length, type: 'image/png' });
  // Its Download link and its form value: a File named after the input.
  const dl = await download(demo, demo.getByRole('link', { name: 'Download', exact: true }));
  assert.equal(dl.name, 'chelsea_16_x4.png');
  assert.ok(dl.bytes.equals(bytes));
  const form = await demo.evaluate(() => {
    const f = new FormData(document.getElementById('form')).get('photo');
    const el = document.querySelector('onestep-upscaler');
    return { name: f?.name, size: f?.size, type: f?.type, value: el.value?.name };
  });
  assert.deepEqual(form, { name: 'chelsea_16_x4.png', size: bytes.length, type: 'image/png', value: 'chelsea_16_x4.png' });
  const t2 = Date.now();

  // upscale(blob) from a script: the same bytes; attributes and properties reflect.
  const r = await demo.evaluate(async () => {
    const el = document.querySelector('onestep-upscaler');
    el.scale = 2;
    const reflected = el.getAttribute('scale');
    el.removeAttribute('scale');
    const blob = await (await fetch('/fixtures/realesrgan/chelsea_16.png')).blob();
    const png = await el.upscale(blob);
    return { reflected, scale: el.scale, bytes: Array.from(new Uint8Array(await png.arrayBuffer())) };
  });
  assert.equal(r.reflected, '2');
  assert.equal(r.scale, null);
  assert.ok(Buffer.from(r.bytes).equals(bytes), 'upscale(blob) gives the same bytes');
  const t3 = Date.now();

  // cancel() during a run (32x32: long enough to be stopped in the middle).
  const c = await demo.evaluate(async () => {
    const el = document.querySelector('onestep-upscaler');
    window.events = [];
    const blob = await (await fetch('/fixtures/realesrgan/chelsea_32.png')).blob();
    el.addEventListener('upscale-progress', (e) => { if (e.detail.stage === 'upscale') el.cancel(); });
    const t = performance.now();
    try { await el.upscale(blob); return { result: 'resolved' }; } catch (e) {
      return { result: e.message, ms: performance.now() - t, types: window.events.map((e) => e.type), busy: el.busy };
    }
  });
  console.log('cancel', JSON.stringify({ ...c, types: [...new Set(c.types)] }));
  assert.equal(c.result, 'cancelled');
  assert.equal(c.types[0], 'upscale-start');
  assert.equal(c.types.at(-1), 'upscale-cancel');
  assert.ok(!c.types.includes('upscale-complete') && !c.types.includes('upscale-error'));
  assert.equal(c.busy, false);
  assertLocal(requests, 'the element test');
  assert.deepEqual(demo.errors, []);
  console.log(`page ${t1 - t0} ms, element UI ${t2 - t1} ms, upscale() ${t3 - t2} ms, cancel ${Date.now() - t3} ms`);
});

test('the element: properties set before the upgrade, attribute reflection, disabled', async () => {
  // A page of this origin whose script sets properties before the element is defined.
  writeFileSync(`${out}/early.html`, `<!doctype html><body>
    <script>
      const el = document.createElement('onestep-upscaler');
      el.scale = 2; el.lambdaPix = 0.5; el.colorFix = 'wavelet'; el.disabled = true;
      document.body.append(el);
    </script>
    <script type="module" src="/onestep-upscaler.js"></script></body>`);
  const page = await openPage(ctx, `${srv.url}/out/early.html`);
  await page.waitForFunction(() => customElements.get('onestep-upscaler'));
  const r = await page.evaluate(async () => {
    const el = document.querySelector('onestep-upscaler');
    const out = {
      upgraded: el instanceof customElements.get('onestep-upscaler'),
      attrs: ['scale', 'lambda-pix', 'color-fix', 'disabled'].map((a) => el.getAttribute(a)),
      props: [el.scale, el.lambdaPix, el.lambdaSem, el.colorFix, el.disabled],
      shadow: Boolean(el.shadowRoot),
      parts: [...el.shadowRoot.querySelectorAll('[part]')].map((p) => p.getAttribute('part')).sort(),
      go: el.shadowRoot.querySelector('button.go').disabled,
    };
    try { await el.upscale(new Blob([])); out.disabledRun = 'resolved'; } catch (e) { out.disabledRun = e.message; }
    el.disabled = false;
    out.after = el.hasAttribute('disabled');
    return out;
  });
  assert.equal(r.upgraded, true);
  assert.deepEqual(r.attrs, ['2', '0.5', 'wavelet', '']);
  assert.deepEqual(r.props, [2, 0.5, null, 'wavelet', true]);
  assert.equal(r.shadow, true);
  assert.deepEqual(r.parts, ['compare', 'drop-zone', 'progress', 'toolbar']);
  assert.equal(r.go, true);
  assert.equal(r.disabledRun, 'the upscaler is disabled');
  assert.equal(r.after, false);
  assertLocal(requests, 'the element tests');
  await page.close();
});
