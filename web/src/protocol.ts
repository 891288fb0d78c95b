// Messages between the page (client.ts) and the inference worker (worker.ts).

export type Input = Blob | ImageData | ImageBitmap;
export interface Region { x: number; y: number; width: number; height: number }

export type Op =
  | { op: 'load'; url: string; opts: { persist?: boolean; backend?: 'auto' | 'webgpu' | 'cpu'; precision?: 'auto' | 'f16' | 'f32'; uploadBlockBytes?: number } }
  | { op: 'upscale'; image: Input; opts: Record<string, unknown> }
  | { op: 'adjust'; lambdaPix: number; lambdaSem: number; opts: Record<string, unknown> }
  | { op: 'adjustRegion'; lambdaPix: number; lambdaSem: number; region: Region }
  // Real-ESRGAN split at its tiles, for a pool of workers (pool.ts).
  | { op: 'plan'; image: Input; opts: Record<string, unknown> }
  | { op: 'tile'; index: number }
  | { op: 'accept'; index: number; values: Float32Array }
  | { op: 'finish'; opts: Record<string, unknown> }
  | { op: 'cached' }
  | { op: 'evict'; url: string }
  | { op: 'capabilities'; opts?: { width?: number; height?: number } }
  | { op: 'inspect'; image: Blob | { width: number; height: number } }
  | { op: 'memory' }
  | { op: 'cancel'; target: number };

export type Request = Op & { id: number };

export type Response =
  | { id: number; type: 'progress'; progress: unknown }
  | { id: number; type: 'done'; value: unknown }
  | { id: number; type: 'error'; message: string }
  /** The worker cannot go on (its GPU device was lost, or the module failed): the page ends
   *  it, and the next call starts a new one. */
  | { id: 0; type: 'dead'; message: string };
