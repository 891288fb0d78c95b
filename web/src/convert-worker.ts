// The conversion worker: turns the official diffusion files a person picked into a stored
// model (pkg's addDiffusionModel: the CLI's converter, reading the files in slices with
// FileReaderSync, which only workers have). One conversion per worker; the client ends it.
import { CPU_PACKAGE } from './packages';

// The conversion is CPU work: the CPU-only package (a sixth of the bytes) has the same API.
type Pkg = typeof import('../../pkg/onestep_sr.js');
const pkgUrl = CPU_PACKAGE;
const controller = new AbortController();

self.onmessage = async (ev: MessageEvent) => {
  const msg = ev.data as { op: 'convert'; files: [string, File][]; quantize?: string } | { op: 'cancel' };
  if (msg.op === 'cancel') { controller.abort(); return; }
  const post = (m: unknown) => (self as unknown as Worker).postMessage(m);
  try {
    const m: Pkg = await import(/* @vite-ignore */ pkgUrl);
    await m.default();
    const onProgress = (progress: unknown) => post({ type: 'progress', progress });
    const value = await m.addDiffusionModel(msg.files, { quantize: msg.quantize, onProgress, signal: controller.signal });
    // The wasm Memory's size is its peak: what the conversion needed at most.
    const memory = m.memoryStats();
    post({ type: 'done', value: { ...value, wasmBytes: memory.wasmBytes } });
  } catch (e) {
    post({ type: 'error', message: (e as Error)?.message ?? String(e) });
  }
};
