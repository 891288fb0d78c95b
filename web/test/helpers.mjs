// Shared by the browser tests: the server, Chromium through playwright-core, the native CLI.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { startServer } from '../scripts/server.mjs';

export const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const cache = process.env.ONESTEP_CACHE ?? join(homedir(), '.cache', 'onestep-sr');
export const cli = process.env.ONESTEP_BIN ?? join(process.env.CARGO_TARGET_DIR ?? join(cache, 'target'), 'release', 'onestep');
export const chromiumPath = process.env.CHROMIUM ?? '/usr/bin/chromium';

for (const p of ['pkg', 'pkg/cpu']) if (!existsSync(join(root, p, 'onestep_sr_bg.wasm'))) throw new Error(`${p}/ is not built: run \`npm --prefix web run build\``);
if (!existsSync(cli)) throw new Error(`the native CLI is not built (${cli}): run \`cargo build --release\``);

/// A scratch directory removed at exit.
export function scratch() {
  const d = mkdtempSync(join(tmpdir(), 'onestep-web-'));
  process.on('exit', () => rmSync(d, { recursive: true, force: true }));
  return d;
}

export function onestep(...args) {
  return execFileSync(cli, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] }).toString();
}

export async function server(extra = {}) {
  return startServer({ root, extra });
}

/// Chromium with a fresh profile; WebGPU (SwiftShader) unless `webgpu: false`.
export async function browser({ webgpu = true, profile = scratch() } = {}) {
  const args = ['--headless=new', '--no-sandbox', '--disable-gpu-sandbox', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-quic'];
  if (webgpu) args.push('--enable-unsafe-webgpu');
  const ctx = await chromium.launchPersistentContext(profile, {
    executablePath: chromiumPath, headless: true, args,
    ignoreDefaultArgs: ['--headless', '--use-angle=swiftshader-webgl', '--enable-unsafe-swiftshader'],
  });
  return ctx;
}

/// A page on the harness with the wasm package initialised.
export async function harness(ctx, base, { init } = {}) {
  const page = ctx.pages()[0] ?? await ctx.newPage();
  const logs = [];
  page.on('console', (m) => logs.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`pageerror: ${e.message}`));
  if (init) await page.addInitScript(init);
  await page.goto(`${base}/test/harness.html`);
  await page.waitForFunction(() => window.ready !== undefined, null, { timeout: 120_000 });
  const ready = await page.evaluate(() => window.ready);
  if (ready !== true) throw new Error(`the wasm package failed to start: ${ready}\n${logs.join('\n')}`);
  page.logs = logs;
  return page;
}
