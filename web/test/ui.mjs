// Shared by the page, element, slider and PWA tests: the page opened at a size, every request
// recorded, downloads read back, the layout checks, and the screenshots for docs/.
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { root, scratch } from './helpers.mjs';

export const PHOTO = 'tests/fixtures/realesrgan/chelsea_16.png';
// The committed screenshots are rewritten only with ONESTEP_SCREENSHOTS=1 (so a test run
// leaves the checkout clean); otherwise they go to a scratch folder, checked all the same.
export const SHOTS = process.env.ONESTEP_SCREENSHOTS ? join(root, 'docs', 'screenshots') : scratch();

/** Every request of the context (pages, workers, the service worker), with a time. */
export function recordRequests(ctx) {
  const list = [];
  ctx.on('request', (r) => list.push({ url: r.url(), t: Date.now(), method: r.method() }));
  return list;
}

/** No request left 127.0.0.1 (blob: and data: URLs are not requests to anywhere). */
export function assertLocal(requests, what = 'the test') {
  const away = requests.filter((r) => !/^(blob:|data:)/.test(r.url) && new URL(r.url).hostname !== '127.0.0.1');
  assert.deepEqual(away.map((r) => r.url), [], `requests that left 127.0.0.1 during ${what}`);
}

export async function openPage(ctx, url, { width = 1440, height = 900 } = {}) {
  const page = await ctx.newPage();
  await page.setViewportSize({ width, height });
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error') page.errors.push(`console: ${m.text()}`); });
  await page.goto(url);
  return page;
}

/** Clicks `locator` and returns the download's file name and bytes. */
export async function download(page, locator) {
  const [d] = await Promise.all([page.waitForEvent('download', { timeout: 60_000 }), locator.click()]);
  const path = await d.path();
  return { name: d.suggestedFilename(), bytes: readFileSync(path) };
}

/**
 * The page at its current size: no horizontal scroll, and every control (buttons, links,
 * inputs, selects, sliders) rendered inside the page's width, so that scrolling down reaches
 * it. Returns what it found for the message.
 */
export async function assertLayout(page, label) {
  const r = await page.evaluate(() => {
    const de = document.documentElement;
    const out = { scrollWidth: de.scrollWidth, clientWidth: de.clientWidth, bad: [], controls: 0 };
    const all = [...document.querySelectorAll('button, a[href], input, select, [role=slider], label[for]')];
    for (const el of all) {
      const hiddenInput = el.tagName === 'INPUT' && (el.type === 'file' || getComputedStyle(el).opacity === '0');
      const r = el.getBoundingClientRect();
      if (hiddenInput || (r.width === 0 && r.height === 0)) continue;  // not rendered (hidden) or reached via its label
      out.controls++;
      const x0 = r.left + window.scrollX, x1 = r.right + window.scrollX;
      if (x0 < -0.5 || x1 > de.clientWidth + 0.5) out.bad.push(`${el.tagName.toLowerCase()} "${(el.getAttribute('aria-label') || el.textContent || el.id).trim().slice(0, 30)}" at ${Math.round(x0)}..${Math.round(x1)}`);
      // Inside a clipped, non-scrolling ancestor (it could not be reached)?
      for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
        const s = getComputedStyle(p);
        if (s.overflowX === 'hidden' || s.overflowY === 'hidden') {
          const pr = p.getBoundingClientRect();
          if (r.right > pr.right + 1 || r.left < pr.left - 1 || r.top < pr.top - 1 || r.bottom > pr.bottom + 1) {
            out.bad.push(`${el.tagName.toLowerCase()} "${(el.getAttribute('aria-label') || el.textContent || el.id).trim().slice(0, 30)}" clipped by .${p.className}`);
          }
          break;
        }
      }
    }
    // Reachable: scrolled into view, the control itself (not something over it) is what a
    // click at its centre hits.
    for (const el of all) {
      const hiddenInput = el.tagName === 'INPUT' && (el.type === 'file' || getComputedStyle(el).opacity === '0');
      const b = el.getBoundingClientRect();
      if (hiddenInput || (b.width === 0 && b.height === 0)) continue;
      el.scrollIntoView({ block: 'center', inline: 'center' });
      const r = el.getBoundingClientRect();
      const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
      if (!hit || !(el === hit || el.contains(hit))) {
        out.bad.push(`${el.tagName.toLowerCase()} "${(el.getAttribute('aria-label') || el.textContent || el.id).trim().slice(0, 30)}" covered by ${hit ? hit.tagName.toLowerCase() + '.' + hit.className : 'nothing'}`);
      }
    }
    window.scrollTo(0, 0);
    return out;
  });
  assert.ok(r.scrollWidth <= r.clientWidth, `${label}: horizontal scroll (${r.scrollWidth} > ${r.clientWidth})`);
  assert.deepEqual(r.bad, [], `${label}: controls out of reach`);
  assert.ok(r.controls >= 5, `${label}: ${r.controls} controls rendered`);
  return r;
}

/** A screenshot for the docs (docs/screenshots/NAME.png with ONESTEP_SCREENSHOTS=1), at most 300 KB. */
export async function screenshot(page, name, opts = {}) {
  mkdirSync(SHOTS, { recursive: true });
  const path = join(SHOTS, `${name}.png`);
  const png = await page.screenshot({ fullPage: false, animations: 'disabled', caret: 'hide', ...opts });
  writeFileSync(path, png);
  const kb = statSync(path).size / 1024;
  assert.ok(kb <= 300, `${name}.png is ${kb.toFixed(0)} KB (at most 300)`);
  return path;
}
