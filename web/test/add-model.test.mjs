// "Add a diffusion model" as a person would: pick the folder with SD 2.1-base (the tiny
// random-weight fixture in its layout) and pisa_sr.pkl / osediff.pkl, choose the model the
// page added, Choose image, Upscale, Download: the CLI's own conversion and upscale of the
// same files, within 1 level, on the CPU fallback, with no request leaving 127.0.0.1. Bad
// folders get one line and store nothing; Cancel keeps nothing; a conversion cut short is
// noted on the next visit and its shards are dropped.
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { browser, onestep, root, scratch, server } from './helpers.mjs';
import { pngDiff } from './png.mjs';
import { assertLocal, download, openPage, recordRequests } from './ui.mjs';

// Paths from the repository root (the tests run from web/ under `npm --prefix web test`).
const SD = join(root, 'tests/fixtures/sd');
const IMAGE = `${SD}/lr.png`;
let dir, srv, ctx, page, requests;

/** A folder named `name` holding the fixture's diffusers layout plus `pkls` ({ file: bytes }). */
function folder(name, pkls, { skip = [] } = {}) {
  const d = join(dir, name);
  mkdirSync(d, { recursive: true });
  for (const part of ['model_index.json', 'unet', 'vae', 'text_encoder', 'tokenizer', 'scheduler']) {
    if (!skip.includes(part)) cpSync(join(SD, part), join(d, part), { recursive: true });
  }
  for (const [file, bytes] of Object.entries(pkls)) writeFileSync(join(d, file), bytes);
  return d;
}

before(async () => {
  dir = scratch();
  const pisa = readFileSync(`${SD}/pisa_sr.pkl`), ose = readFileSync(`${SD}/osediff.pkl`);
  folder('sd21-pisa', { 'pisa_sr.pkl': pisa });
  folder('sd21-osediff', { 'osediff.pkl': ose });
  folder('no-unet', { 'pisa_sr.pkl': pisa }, { skip: ['unet'] });
  folder('two-pkl', { 'pisa_sr.pkl': pisa, 'osediff.pkl': ose });
  // The CLI's own conversion (as `onestep convert sd --quantize mixed`) and upscale.
  for (const [method, pkl] of [['pisa-sr', 'pisa_sr.pkl'], ['osediff', 'osediff.pkl']]) {
    onestep('convert', 'sd', '--base', SD, '--lora', `${SD}/${pkl}`, '--method', method, '--quantize', 'mixed', '--out', `${dir}/cli-${method}`);
    onestep('upscale', IMAGE, '-o', `${dir}/cli-${method}.png`, '--model', `${dir}/cli-${method}`, '--device', 'cpu');
  }
  srv = await server();
  ctx = await browser({ webgpu: false });
  requests = recordRequests(ctx);
  page = await openPage(ctx, `${srv.url}/`);
  await page.waitForFunction(() => document.getElementById('model').options.length > 1);
});
after(async () => {
  await ctx?.close();
  await srv?.close();
});

const addStatus = () => page.locator('#add-status').textContent();

/** Pick `name` with the folder input; wait for the outcome line. */
async function add(name) {
  await page.locator('#add-folder').setInputFiles(join(dir, name));
  await page.waitForFunction(() => /was added|Could not add|Cancelled/.test(document.getElementById('add-status').textContent), null, { timeout: 120_000 });
  return addStatus();
}

/** Shard keys of models made on this device, and the stored records' URLs. */
const stored = () => page.evaluate(() => new Promise((resolve, reject) => {
  const r = indexedDB.open('onestep-sr');
  r.onerror = () => reject(r.error);
  r.onsuccess = () => {
    const db = r.result;
    const tx = db.transaction(['shards', 'models']);
    const keys = tx.objectStore('shards').getAllKeys();
    const urls = tx.objectStore('models').getAllKeys();
    tx.oncomplete = () => { resolve({ local: keys.result.filter((k) => k.startsWith('local-')), models: urls.result }); db.close(); };
  };
}));

for (const [method, label, name] of [['pisa-sr', 'PiSA-SR', 'sd21-pisa'], ['osediff', 'OSEDiff', 'sd21-osediff']]) {
  test(`${label}: the folder added in the page, then Choose image → Upscale → Download gives the CLI's PNG`, async () => {
    const t0 = Date.now();
    assert.equal(await page.getByRole('button', { name: 'Add a diffusion model', exact: true }).isVisible(), true);
    assert.match(await add(name), new RegExp(`^${label} was added`));
    // Chosen in the model list, named by its method, on this device.
    const option = await page.locator('#model option:checked').textContent();
    assert.ok(option.startsWith(label), `the chosen option reads ${JSON.stringify(option)}`);
    assert.match(option, /on this device/);
    await page.waitForFunction((l) => document.getElementById('cache').textContent.includes(`${l}:`), label);
    const t1 = Date.now();
    await page.getByLabel('Choose image').setInputFiles(IMAGE);
    await page.getByRole('button', { name: 'Upscale', exact: true }).click();
    const link = page.getByRole('link', { name: 'Download', exact: true });
    await link.waitFor({ state: 'visible', timeout: 120_000 });
    const d = await download(page, link);
    const diff = pngDiff(d.bytes, readFileSync(`${dir}/cli-${method}.png`));
    console.log(`${label}: added in ${t1 - t0} ms, upscaled in ${Date.now() - t1} ms; page vs CLI ${JSON.stringify(diff)}`);
    assert.deepEqual(diff.size, [80, 64]);
    assert.ok(diff.max <= 1, `max difference ${diff.max} levels (${diff.n} values)`);
    assertLocal(requests, `adding and running ${label}`);
  });
}

test('bad folders: one line each, nothing stored; Cancel keeps nothing; a conversion cut short is noted and its shards dropped', async () => {
  const before = await stored();
  assert.match(await add('no-unet'), /^Could not add the model: no-unet has no unet\/ folder/);
  assert.match(await add('two-pkl'), /^Could not add the model: two-pkl has 2 \.pkl files \((osediff|pisa_sr)\.pkl, (osediff|pisa_sr)\.pkl\)/);
  assert.deepEqual(await stored(), before, 'nothing stored by a refused folder');
  // Cancel at once: stopped at the next tensor, what was stored deleted.
  await page.locator('#add-folder').setInputFiles(join(dir, 'sd21-pisa'));
  await page.getByRole('button', { name: 'Cancel', exact: true }).and(page.locator('#add-cancel')).click();
  await page.waitForFunction(() => /Cancelled|was added/.test(document.getElementById('add-status').textContent), null, { timeout: 60_000 });
  assert.equal(await addStatus(), 'Cancelled: nothing was kept.');
  assert.deepEqual(await stored(), before, 'nothing stored by a cancelled conversion');
  // A tab closed mid-way: shards under a key no record names, and the page's note.
  await page.evaluate(() => new Promise((resolve) => {
    const r = indexedDB.open('onestep-sr');
    r.onsuccess = () => {
      const tx = r.result.transaction('shards', 'readwrite');
      tx.objectStore('shards').put(new Uint8Array(8), 'local-cut/00000');
      tx.oncomplete = () => { r.result.close(); resolve(); };
    };
  }));
  await page.evaluate(() => localStorage.setItem('onestep-adding', 'sd21-pisa'));
  await page.reload();
  assert.match(await addStatus(), /Adding sd21-pisa stopped when the page was closed; nothing of it was kept/);
  assert.ok((await stored()).local.includes('local-cut/00000'));
  // The next add drops them (and refuses this folder: still nothing of it stored).
  await add('no-unet');
  const now = await stored();
  assert.ok(!now.local.includes('local-cut/00000'), 'the cut conversion\'s shards are gone');
  assert.deepEqual(now.models, before.models);
});
