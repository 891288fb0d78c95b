// The upload page, as a person uses it (CPU fallback: what a browser without WebGPU, or with
// only a software adapter, runs): usable before the wasm arrives (held back by the test);
// "Choose image", "Upscale", "Download" against the native CLI; the compare view (a
// transparent input over the view's backdrop, not over the result); Cancel; the result
// brought into view at 375 px; a queue of three and "Download all" as a ZIP; the model
// picker and manager; the CPU notice said once; the layout at 375 and 1440 px; axe-core finds
// nothing on the empty page nor after an upscale; no request leaves 127.0.0.1, and none at
// all is made while images are upscaled. One browser for the whole file.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { after, before, test } from 'node:test';
import { unzipSync } from 'fflate';
import { browser, onestep, root, scratch, server } from './helpers.mjs';
import { pngDiff, readPng } from './png.mjs';
import { PHOTO, assertLayout, assertLocal, download, openPage, recordRequests, screenshot } from './ui.mjs';

const QUEUE = {
  'chelsea_16.png': 'tests/fixtures/realesrgan/chelsea_16.png',
  'alpha_gradient_16.png': 'tests/fixtures/browser/alpha_gradient_16.png',
  'exif_rot6.jpg': 'tests/fixtures/browser/exif_rot6.jpg',
};
let srv, out, ctx, page, requests;
const cli = (name) => readFileSync(`${out}/${name.replace(/\.[^.]+$/, '')}_x4.png`);
// The wasm is held back until the first upscale's test lets it through: the page must work
// without it until then.
let releaseWasm;
const wasmGate = new Promise((ok) => { releaseWasm = ok; });
let wasmAsked = 0;
let wasmArrived = false;

before(async () => {
  out = scratch();
  for (const [name, path] of Object.entries(QUEUE)) onestep('upscale', path, '-o', `${out}/${name.replace(/\.[^.]+$/, '')}_x4.png`, '--device', 'cpu');
  onestep('upscale', PHOTO, '-o', `${out}/chelsea_16_x2.png`, '--device', 'cpu', '--scale', '2');
  srv = await server();
  ctx = await browser({ webgpu: false });
  requests = recordRequests(ctx);
  await ctx.route(/onestep_sr_bg\.wasm$/, async (route) => {
    wasmAsked++;
    await wasmGate;
    await route.continue();
    wasmArrived = true;
  });
  page = await openPage(ctx, `${srv.url}/`);
});
after(async () => {
  await ctx?.close();
  await srv?.close();
});

const status = () => page.locator('#status').textContent();

/** axe-core (web/node_modules) on the page as it is: no violation. */
async function assertAxe(label) {
  const source = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
  const violations = await page.evaluate(async (src) => {
    if (!window.axe) (0, eval)(src);
    const r = await window.axe.run(document);
    return r.violations.map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
  }, source);
  assert.deepEqual(violations, [], `axe-core, ${label}`);
}

test('the empty page, before any wasm: catalog with size and cached state, layout at 1440 and 375 px, no axe violation', async () => {
  const t0 = Date.now();
  // The picker shows the default model (once models.json is read), its download size and
  // that nothing is cached yet.
  await page.waitForFunction(() => document.getElementById('model').options.length > 1);
  assert.equal(await page.locator('#model').inputValue(), 'realesrgan-x4plus');
  await page.waitForFunction(() => document.getElementById('model-info').dataset.cache === 'none');
  assert.match(await page.textContent('#model-info'), /Download 33\.4 MB/);
  assert.match(await page.locator('#model option:checked').textContent(), /Real-ESRGAN x4plus .*33\.4 MB/);
  assert.equal(await page.getByRole('button', { name: 'Upscale', exact: true }).isDisabled(), true);
  await assertLayout(page, '1440 px, empty');
  await screenshot(page, 'empty');
  await page.setViewportSize({ width: 375, height: 812 });
  await assertLayout(page, '375 px, empty');
  await page.setViewportSize({ width: 1440, height: 900 });
  await assertAxe('the empty page');
  assert.equal(wasmArrived, false, 'all of this without the wasm');
  console.log(`empty page: ${Date.now() - t0} ms`);
});

test('Choose image before the wasm has arrived → Upscale → Download: the CLI\'s PNG, named after the input; the CPU notice once; the compare view zooms and splits', async () => {
  const t0 = Date.now();
  await page.getByLabel('Choose image').setInputFiles(join(PHOTO));
  // Listed at once, the engine (the wasm, asked for by now) still held back.
  await page.locator('#queue li').filter({ hasText: 'chelsea_16.png' }).waitFor({ timeout: 10_000 });
  await page.waitForFunction(() => /Checking/.test(document.querySelector('#queue li').textContent));
  const go = page.getByRole('button', { name: 'Upscale', exact: true });
  assert.equal(await go.isDisabled(), false, 'Upscale waits for the check, not for the engine to be enabled');
  assert.ok(wasmAsked > 0, 'the chosen image asked for the engine');
  assert.equal(wasmArrived, false);
  await go.click();
  releaseWasm();
  // While it runs: a progress line and Cancel; the screenshot of that state.
  await page.waitForFunction(() => /Upscaling/.test(document.getElementById('status').textContent), null, { timeout: 60_000 });
  assert.ok(await page.getByRole('button', { name: 'Cancel', exact: true }).isVisible());
  await screenshot(page, 'running');
  const link = page.getByRole('link', { name: 'Download', exact: true });
  await link.waitFor({ state: 'visible', timeout: 120_000 });
  assert.match(await status(), /^Done in [\d.]+ s: chelsea_16_x4\.png\.$/);
  const d = await download(page, link);
  assert.equal(d.name, 'chelsea_16_x4.png');
  const diff = pngDiff(d.bytes, cli('chelsea_16.png'));
  console.log('page vs CLI', JSON.stringify(diff), Buffer.compare(d.bytes, cli('chelsea_16.png')) === 0 ? 'same bytes' : 'bytes differ');
  assert.deepEqual(diff.size, [64, 64]);
  assert.ok(diff.max <= 1, `max difference ${diff.max} levels (${diff.n} values)`);
  // No WebGPU here: said once, in a person's words (what it means, what to do), and never in
  // the engine's terms.
  await page.waitForFunction(() => document.getElementById('caps').dataset.backend === 'cpu');
  const text = await page.evaluate(() => document.body.innerText);
  assert.equal(text.split('upscaled on the processor').length - 1, 1, text);
  assert.match(await page.textContent('#caps'), /slower, with the same result\. A browser with WebGPU/);
  assert.doesNotMatch(text, /backend|forces the adapter|WebGPU adapter|software one|running on the CPU/);
  await assertAxe('after an upscale');
  // The model is now on this device: the picker and the manager say so.
  await page.waitForFunction(() => document.getElementById('model-info').dataset.cache === 'cached');
  await page.waitForFunction(() => /Real-ESRGAN x4plus: 33\.4 MB/.test(document.getElementById('cache').textContent));
  // Compare view: both images, a keyboard slider, zoom buttons, 1:1, the wheel.
  const handle = page.getByRole('slider', { name: 'Before and after' });
  assert.equal(await handle.getAttribute('aria-valuenow'), '50');
  await handle.focus();
  await page.keyboard.press('ArrowLeft');
  await page.keyboard.press('ArrowLeft');
  assert.equal(await handle.getAttribute('aria-valuenow'), '46');
  const zoom = () => page.evaluate(() => Number(document.querySelector('.cmp').dataset.zoom));
  const fit = await zoom();
  await page.getByRole('button', { name: 'Zoom in' }).click();
  assert.ok(Math.abs(await zoom() - fit * 1.5) < 1e-6);
  await page.getByRole('button', { name: '1:1' }).click();
  assert.equal(await zoom(), 1);
  const box = await page.locator('.cmp-view').boundingBox();
  await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
  await page.mouse.wheel(0, -300);
  assert.ok(await zoom() > 1, 'the wheel zooms in');
  await page.getByRole('button', { name: 'Fit' }).click();
  assert.ok(Math.abs(await zoom() - fit) < 1e-6);
  assert.equal(await page.evaluate(() => getComputedStyle(document.querySelector('.cmp-before canvas')).imageRendering), 'pixelated');
  await screenshot(page, 'compare');
  await assertLayout(page, '1440 px, result');
  await page.setViewportSize({ width: 375, height: 812 });
  await assertLayout(page, '375 px, result');
  await screenshot(page, 'phone', { fullPage: true });
  await page.setViewportSize({ width: 1440, height: 900 });
  assertLocal(requests, 'the first upscale');
  assert.deepEqual(page.errors, []);
  console.log(`choose/upscale/download: ${Date.now() - t0} ms`);
});

test('three files queued: three results, no request while they run, and "Download all" is a ZIP of three PNGs', async () => {
  const t0 = Date.now();
  // Start from an empty queue.
  await clearQueue();
  await page.getByLabel('Choose image').setInputFiles(Object.values(QUEUE).map((p) => join(p)));
  await page.waitForFunction(() => document.querySelectorAll('#queue li').length === 3);
  const from = requests.length;
  await page.getByRole('button', { name: 'Upscale', exact: true }).click();
  await page.waitForFunction(() => /^3 of 3 images done/.test(document.getElementById('status').textContent), null, { timeout: 120_000 });
  // blob: URLs are the page showing its own results (in memory), not network requests.
  const during = requests.slice(from).filter((r) => !/^(blob|data):/.test(r.url));
  assert.deepEqual(during.map((r) => r.url), [], 'requests while the queue ran (the model was loaded before)');
  const zip = await download(page, page.getByRole('button', { name: 'Download all', exact: true }));
  assert.match(zip.name, /\.zip$/);
  const files = unzipSync(new Uint8Array(zip.bytes));
  assert.deepEqual(Object.keys(files).sort(), ['alpha_gradient_16_x4.png', 'chelsea_16_x4.png', 'exif_rot6_x4.png']);
  for (const [name, bytes] of Object.entries(files)) {
    const d = pngDiff(Buffer.from(bytes), cli(name.replace('_x4.png', '.png')));
    console.log(name, JSON.stringify(d));
    assert.ok(d.max <= 1, `${name}: max difference ${d.max} levels`);
  }
  assert.deepEqual(pngDiff(Buffer.from(files['exif_rot6_x4.png']), cli('exif_rot6.jpg')).size, [32, 48], 'EXIF orientation kept');
  assert.equal(readPng(Buffer.from(files['alpha_gradient_16_x4.png'])).channels, 4, 'alpha kept');
  await assertBackdrop(readFileSync(join(QUEUE['alpha_gradient_16.png'])), Buffer.from(files['alpha_gradient_16_x4.png']));
  // Each item also has its own link.
  assert.equal(await page.getByRole('link', { name: /^Download .*_x4\.png$/ }).count(), 3);
  // One word for one action, and the visible word is part of the link's name (axe's
  // label-content-name-mismatch).
  assert.deepEqual(await page.locator('#queue li a').allTextContents(), ['Download', 'Download', 'Download']);
  assertLocal(requests, 'the queue');
  console.log(`queue of three + zip: ${Date.now() - t0} ms`);
});

test('Cancel in the middle of a run leaves the page usable; the next run succeeds', async () => {
  const t0 = Date.now();
  await clearQueue();
  // 32x32: long enough on the CPU fallback to be stopped in the middle.
  await page.getByLabel('Choose image').setInputFiles(join('tests/fixtures/realesrgan/chelsea_32.png'));
  await page.getByRole('button', { name: 'Upscale', exact: true }).click();
  await page.waitForFunction(() => /Upscaling/.test(document.getElementById('status').textContent), null, { timeout: 60_000 });
  const c0 = Date.now();
  await page.getByRole('button', { name: 'Cancel', exact: true }).click();
  await page.waitForFunction(() => /^Cancelled/.test(document.getElementById('status').textContent), null, { timeout: 10_000 });
  const cancelMs = Date.now() - c0;
  console.log(`cancelled after ${cancelMs} ms`);
  assert.ok(cancelMs < 5000, `Cancel took ${cancelMs} ms`);
  assert.equal(await page.locator('#queue li').getAttribute('data-state'), 'cancelled');
  assert.equal(await page.getByRole('button', { name: 'Cancel', exact: true }).isVisible(), false);
  assert.equal(await page.getByRole('link', { name: 'Download', exact: true }).isVisible(), false);
  // Still usable: remove it, choose another photo, upscale at x2 (the model's x4 output
  // brought down, as the CLI's --scale 2 does), download.
  await page.getByRole('button', { name: 'Remove chelsea_32.png' }).click();
  await page.getByLabel('Choose image').setInputFiles(join(PHOTO));
  await page.getByLabel('Output scale').selectOption('2');
  // On a phone the result is below the controls: a finished run brings it into view, and
  // leaves the focus where it was.
  await page.setViewportSize({ width: 375, height: 812 });
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.getByRole('button', { name: 'Upscale', exact: true }).click();
  const link = page.getByRole('link', { name: 'Download', exact: true });
  await link.waitFor({ state: 'visible', timeout: 120_000 });
  await page.waitForFunction(() => {
    const r = document.getElementById('download').getBoundingClientRect();
    return r.height > 0 && r.top >= 0 && r.bottom <= window.innerHeight;
  }, null, { timeout: 5000 }).catch(async () => {
    const r = await page.evaluate(() => [document.getElementById('download').getBoundingClientRect().top, window.innerHeight, window.scrollY]);
    assert.fail(`at 375x812 the result's Download is not in view after the run (top, viewport, scrollY): ${r}`);
  });
  // The button pressed keeps the focus (disabled while it ran, the browser may drop it then).
  assert.equal(await page.evaluate(() => document.activeElement.id), 'go', 'the focus stays on Upscale');
  await page.setViewportSize({ width: 1440, height: 900 });
  const d = await download(page, link);
  assert.equal(d.name, 'chelsea_16_x2.png');
  const diff = pngDiff(d.bytes, readFileSync(`${out}/chelsea_16_x2.png`));
  assert.deepEqual(diff.size, [32, 32]);
  assert.ok(diff.max <= 1, `x2: max difference ${diff.max} levels`);
  await page.getByLabel('Output scale').selectOption('');
  assertLocal(requests, 'cancel and the next run');
  console.log(`cancel + next run: ${Date.now() - t0} ms`);
});

test('an unreadable file is a one-line message, not queued, and the page stays usable', async () => {
  await clearQueue();
  await page.getByLabel('Choose image').setInputFiles({ name: 'notes.png', mimeType: 'image/png', buffer: Buffer.from('not an image at all') });
  await page.waitForFunction(() => /^Could not add/.test(document.getElementById('message').textContent));
  const msg = await page.textContent('#message');
  console.log(msg);
  assert.equal(msg, 'Could not add notes.png: not a PNG, JPEG or WebP image.');
  assert.equal(await page.locator('#message').getAttribute('class'), 'msg error');
  assert.equal(await page.locator('#queue li').count(), 0);
  await page.getByLabel('Choose image').setInputFiles(join(PHOTO));
  await page.waitForFunction(() => document.querySelectorAll('#queue li').length === 1);
  assert.equal(await page.getByRole('button', { name: 'Upscale', exact: true }).isDisabled(), false);
});

test('the model manager deletes a cached model', async () => {
  await page.getByRole('button', { name: 'Delete Real-ESRGAN x4plus' }).click();
  await page.waitForFunction(() => /No model downloaded yet/.test(document.getElementById('cache').textContent));
  await page.waitForFunction(() => document.getElementById('model-info').dataset.cache === 'none');
  assert.match(await page.textContent('#storage'), /^Storage: this site uses .* of the .* this browser allows it\.$/);
  assertLocal(requests, 'the whole file');
  assert.deepEqual(page.errors, []);
});

/**
 * The compare view with a transparent input, read from screenshots: Before is the input over
 * the view's backdrop (never the result through it), After the result over the same backdrop.
 */
async function assertBackdrop(inputPng, resultPng) {
  await page.locator('#queue li').filter({ hasText: 'alpha_gradient_16.png' }).locator('.show').click();
  await page.waitForFunction(() => document.querySelector('.cmp-after img').naturalWidth === 64 && !document.querySelector('.cmp-after img').hidden);
  const view = page.locator('.cmp-view');
  const handle = page.getByRole('slider', { name: 'Before and after' });
  const shot = async () => readPng(await view.screenshot({ animations: 'disabled', caret: 'hide' }));
  const layers = (v) => page.evaluate((v) => {
    for (const el of document.querySelectorAll('.cmp-before canvas, .cmp-after img')) el.style.visibility = v;
  }, v);
  const rects = await page.evaluate(() => {
    const r = (s) => { const b = document.querySelector(s).getBoundingClientRect(); return { x: b.left, y: b.top, w: b.width, h: b.height }; };
    return { view: r('.cmp-view'), before: r('.cmp-before canvas'), after: r('.cmp-after img') };
  });
  await handle.focus();
  await page.keyboard.press('End');  // all Before
  const before = await shot();
  await page.keyboard.press('Home');  // all After
  const afterShot = await shot();
  await layers('hidden');
  const backdrop = await shot();
  await layers('');
  await page.keyboard.press('End');
  await page.keyboard.press('Home');
  for (const k of Array(25)) await page.keyboard.press('ArrowRight');  // back to 50 %
  // Each image pixel's centre on the screen: the shot (readPng gives RGBA) against the image's
  // pixel composited over the backdrop at that place. The tags, the handle and the divider
  // sit at the view's edges and top: those places are left out.
  const check = (shotPng, png, rect, label) => {
    const img = readPng(png);
    let n = 0, worst = 0, at = '';
    for (let j = 0; j < img.height; j++) {
      for (let i = 0; i < img.width; i++) {
        const x = Math.floor(rect.x - rects.view.x + (i + 0.5) * rect.w / img.width);
        const y = Math.floor(rect.y - rects.view.y + (j + 0.5) * rect.h / img.height);
        if (y < 40 || y >= shotPng.height - 4 || x < 60 || x >= shotPng.width - 60) continue;
        const p = (j * img.width + i) * 4, q = (y * shotPng.width + x) * 4;
        const a = img.data[p + 3] / 255;
        for (let c = 0; c < 3; c++) {
          const want = a * img.data[p + c] + (1 - a) * backdrop.data[q + c];
          const d = Math.abs(shotPng.data[q + c] - want);
          if (d > worst) { worst = d; at = `pixel ${i},${j} alpha ${img.data[p + 3]}: ${shotPng.data[q + c]} for ${want.toFixed(1)}`; }
        }
        n++;
      }
    }
    console.log(`compare view, ${label}: ${n} pixels, worst ${worst.toFixed(1)} levels (${at})`);
    assert.ok(n >= 50, `${label}: ${n} pixels checked`);
    assert.ok(worst <= 2, `${label}: ${worst.toFixed(1)} levels off the image over the backdrop (${at})`);
  };
  check(before, inputPng, rects.before, 'Before (the input)');
  check(afterShot, resultPng, rects.after, 'After (the result)');
  // What a person sees of it, at both widths (the phone's scrolled to the result).
  await screenshot(page, 'transparent');
  await page.setViewportSize({ width: 375, height: 812 });
  await page.evaluate(() => document.querySelector('section.result').scrollIntoView({ block: 'nearest' }));
  await screenshot(page, 'transparent-phone');
  await page.setViewportSize({ width: 1440, height: 900 });
  await page.evaluate(() => window.scrollTo(0, 0));
}

async function clearQueue() {
  const remove = page.getByRole('button', { name: /^Remove / });
  while (await remove.count()) await remove.first().click();
}

function join(p) {
  return `${root}/${p}`;
}
