// `npm --prefix web run serve`: the app (web/dist), the wasm package and the weights on one
// origin, 127.0.0.1 only. PORT sets the port (default 8080).
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer } from './server.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const port = Number(process.env.PORT ?? 8080);
for (const [path, fix] of [['web/dist/index.html', 'npm --prefix web run build'], ['pkg/onestep_sr_bg.wasm', 'npm --prefix web run build'], ['pkg/cpu/onestep_sr_bg.wasm', 'npm --prefix web run build'],
  ['models/realesrgan-x4plus/manifest.json', 'scripts/fetch-models.sh']]) {
  if (!existsSync(join(root, path))) {
    console.error(`onestep-sr: ${path} is missing: run \`${fix}\` first`);
    process.exit(1);
  }
}
// A port in use is a one-line message, not a stack trace.
await new Promise((ok) => {
  const probe = createServer().once('error', (e) => {
    console.error(`onestep-sr: cannot listen on 127.0.0.1:${port} (${e.code ?? e.message}); set PORT to another port`);
    process.exit(1);
  }).listen(port, '127.0.0.1', () => probe.close(ok));
});
const s = await startServer({ root, port });
console.log(`onestep-sr is served at ${s.url}/  (open it in a browser; weights from ${s.url}/models/; Ctrl+C stops it)`);
