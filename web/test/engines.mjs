// Firefox ESR (WebDriver BiDi, through puppeteer-core) and WebKitGTK's MiniBrowser (Safari's
// engine: WebKitWebDriver under xvfb-run, through selenium-webdriver), from Debian's packages,
// for engines.test.mjs. Each is opened with its downloads going to a given folder and comes
// with the same few steps a person takes (open, choose, upload, click, wait), so one flow
// drives both; close() ends every process it started, whether the test passed or not.
import { spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import puppeteer from 'puppeteer-core';
import { Builder, By } from 'selenium-webdriver';

export const firefoxPath = process.env.FIREFOX ?? '/usr/bin/firefox-esr';
export const webkitDriverPath = process.env.WEBKIT_DRIVER ?? '/usr/bin/WebKitWebDriver';
// webkit2gtk-driver's MiniBrowser lives under the multiarch library folder (x86_64, aarch64…).
export const miniBrowserPath = process.env.MINIBROWSER ?? (() => {
  const lib = readdirSync('/usr/lib').find((d) => existsSync(join('/usr/lib', d, 'webkit2gtk-4.1', 'MiniBrowser')));
  return join('/usr/lib', lib ?? '<arch>-linux-gnu', 'webkit2gtk-4.1', 'MiniBrowser');
})();

/** Throws the one-line message that says how to get `path` when it is missing. */
function need(path, what, pkg) {
  if (!existsSync(path)) throw new Error(`${what} is not installed (${path}, Debian package ${pkg}): run scripts/deps.sh`);
}

/** Firefox ESR, headless, a fresh profile whose download folder is `downloads`. */
export async function firefox(downloads) {
  need(firefoxPath, 'Firefox ESR', 'firefox-esr');
  const browser = await puppeteer.launch({
    browser: 'firefox', executablePath: firefoxPath, headless: true,
    extraPrefsFirefox: {
      'browser.download.dir': downloads, 'browser.download.folderList': 2,
      'browser.download.useDownloadDir': true, 'browser.download.always_ask_before_handling_new_types': false,
    },
  });
  try {
    const page = await browser.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('console', (m) => { if (m.type() === 'error') errors.push(`console: ${m.text()}`); });
    return {
      name: `Firefox ${(await browser.version()).replace(/^firefox\//, '')}`,
      errors,
      goto: (url) => page.goto(url),
      until: (js, timeout) => page.waitForFunction(js, { timeout, polling: 100 }),
      text: (css) => page.$eval(css, (e) => e.textContent),
      choose: (css, value) => page.select(css, value),
      upload: async (css, file) => (await page.$(css)).uploadFile(file),
      click: async (xpath) => (await page.waitForSelector(`xpath/${xpath}`, { visible: true })).click(),
      close: () => browser.close(),
    };
  } catch (e) {
    await browser.close();
    throw e;
  }
}

/**
 * MiniBrowser driven by WebKitWebDriver on a free port, both under xvfb-run (MiniBrowser has no
 * headless mode) in a process group of their own, so that close() ends the driver, the
 * browser, its web processes and Xvfb together. MiniBrowser saves downloads into $HOME: the
 * driver gets `downloads` as its HOME.
 */
export async function webkit(downloads) {
  need(webkitDriverPath, 'WebKitGTK\'s WebDriver', 'webkit2gtk-driver');
  need(miniBrowserPath, 'WebKitGTK\'s MiniBrowser', 'libwebkit2gtk-4.1-0');
  const xvfb = process.env.XVFB_RUN ?? '/usr/bin/xvfb-run';
  need(xvfb, 'xvfb-run', 'xvfb');
  const port = await freePort();
  const proc = spawn(xvfb, ['-a', '-s', '-screen 0 1440x900x24', webkitDriverPath, `--port=${port}`], {
    detached: true, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, HOME: downloads },
  });
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr = (stderr + d).slice(-2000); });
  const exited = new Promise((ok) => proc.once('exit', (code, signal) => ok(signal ?? code)));
  let ended = false;
  exited.then(() => { ended = true; });
  const group = (signal) => { try { process.kill(-proc.pid, signal); } catch { /* already gone */ } };
  const lastResort = () => group('SIGKILL');
  process.once('exit', lastResort);
  let driver;
  const close = async () => {
    if (driver) await driver.quit().catch(() => {});
    driver = undefined;
    group('SIGTERM');
    let timer;
    const gone = await Promise.race([exited.then(() => true), new Promise((ok) => { timer = setTimeout(ok, 5000, false); })]);
    clearTimeout(timer);
    // xvfb-run itself may be gone while Xvfb or a web process lingers: end the whole group.
    group('SIGKILL');
    if (!gone) await exited;
    process.removeListener('exit', lastResort);
  };
  try {
    // Ready when the driver answers on its port (Xvfb starts first: up to a few seconds).
    for (const t0 = Date.now(); ;) {
      if (ended) throw new Error(`WebKitWebDriver exited before it was ready: ${stderr.trim().split('\n').pop() ?? ''}`);
      if (await fetch(`http://127.0.0.1:${port}/status`).then((r) => r.ok, () => false)) break;
      if (Date.now() - t0 > 30_000) throw new Error(`WebKitWebDriver did not answer on port ${port} within 30 s: ${stderr.trim()}`);
      await new Promise((ok) => setTimeout(ok, 100));
    }
    driver = await new Builder().usingServer(`http://127.0.0.1:${port}`).withCapabilities({
      browserName: 'MiniBrowser',
      'webkitgtk:browserOptions': { binary: miniBrowserPath, args: ['--automation'] },
    }).build();
    const d = driver;
    const caps = await d.getCapabilities();
    return {
      name: `WebKitGTK ${caps.get('browserVersion')} (MiniBrowser)`,
      goto: (url) => d.get(url),
      until: (js, timeout) => d.wait(() => d.executeScript(`return Boolean(${js})`), timeout, `waited ${timeout} ms for ${js}`, 100),
      text: (css) => d.executeScript('return document.querySelector(arguments[0]).textContent', css),
      choose: (css, value) => d.findElement(By.css(`${css} option[value="${value}"]`)).click(),
      upload: (css, file) => d.findElement(By.css(css)).sendKeys(file),
      click: (xpath) => d.findElement(By.xpath(xpath)).click(),
      close,
    };
  } catch (e) {
    await close();
    throw e;
  }
}

/** A port nothing listens on now (asked of the OS), for the driver. */
function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once('error', fail);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => ok(port)); });
  });
}
