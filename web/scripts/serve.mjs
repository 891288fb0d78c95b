// `npm --prefix web run serve`: the app, the wasm package and the weights on one origin.
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer } from './server.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const port = Number(process.env.PORT ?? 8080);
const s = await startServer({ root, port });
console.log(`onestep-sr: ${s.url}/  (weights from ${s.url}/models/)`);
