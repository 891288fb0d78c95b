// Adding a diffusion model from the official files (client side): the picked or dropped
// folder's files go to a conversion worker (convert-worker.ts) by reference (a File is a
// handle, not a copy); progress, Cancel, and the stored model's URL for Upscaler.load.

export interface AddProgress { stage: 'read' | 'convert'; bytesDone: number; bytesTotal: number }
export interface AddedModel {
  /** `onestep-local:…`: pass it to Upscaler.load; Upscaler.evict deletes the model. */
  url: string; modelId: string; architecture: 'pisa-sr' | 'osediff'; bytes: number; shards: number;
  /** The conversion worker's wasm memory at its peak, bytes. */
  wasmBytes: number;
}
export interface AddOptions {
  /** "mixed" (default: the UNet's weights in 8 bits, as `onestep convert sd --quantize mixed`),
   *  "q8" (the VAE too) or "f16". */
  quantize?: 'mixed' | 'q8' | 'f16';
  onProgress?: (p: AddProgress) => void;
  signal?: AbortSignal;
}

/** `files`: `[path inside the folder, File]` pairs, or a folder input's FileList (paths from
 *  webkitRelativePath). Resolves when the model is stored; rejects with a one-line message
 *  (nothing is stored then). */
export function addDiffusionModel(files: [string, File][] | FileList, opts: AddOptions = {}): Promise<AddedModel> {
  const list: [string, File][] = Array.isArray(files) ? files : [...files].map((f) => [f.webkitRelativePath || f.name, f]);
  if (opts.signal?.aborted) return Promise.reject(new Error('cancelled'));
  const worker = new Worker(new URL('./convert-worker.js', import.meta.url), { type: 'module' });
  return new Promise<AddedModel>((resolve, reject) => {
    const end = () => { opts.signal?.removeEventListener('abort', cancel); worker.terminate(); };
    const cancel = () => worker.postMessage({ op: 'cancel' });
    opts.signal?.addEventListener('abort', cancel, { once: true });
    worker.onmessage = (ev) => {
      const m = ev.data;
      if (m.type === 'progress') opts.onProgress?.(m.progress);
      else if (m.type === 'done') { end(); resolve(m.value); }
      else if (m.type === 'error') { end(); reject(new Error(m.message)); }
    };
    worker.onerror = (ev) => { end(); reject(new Error(`the conversion worker failed: ${ev.message || 'it could not start'}`)); };
    worker.postMessage({ op: 'convert', files: list, quantize: opts.quantize });
  });
}

/** A dropped folder's files with their paths (DataTransfer entries), or null when the drop
 *  holds no folder. */
export async function droppedFolder(dt: DataTransfer): Promise<[string, File][] | null> {
  const entries = [...dt.items].map((i) => i.webkitGetAsEntry?.()).filter((e): e is FileSystemEntry => !!e);
  const dir = entries.find((e) => e.isDirectory) as FileSystemDirectoryEntry | undefined;
  if (!dir) return null;
  const out: [string, File][] = [];
  const walk = async (d: FileSystemDirectoryEntry, path: string): Promise<void> => {
    const reader = d.createReader();
    for (;;) {
      const batch = await new Promise<FileSystemEntry[]>((res, rej) => reader.readEntries(res, rej));
      if (!batch.length) return;
      for (const e of batch) {
        if (e.isDirectory) await walk(e as FileSystemDirectoryEntry, `${path}${e.name}/`);
        else out.push([`${path}${e.name}`, await new Promise<File>((res, rej) => (e as FileSystemFileEntry).file(res, rej))]);
      }
    }
  };
  await walk(dir, `${dir.name}/`);
  return out;
}
