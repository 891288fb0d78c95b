// Messages between the page (client.ts) and the inference worker (worker.ts).

export type Op =
  | { op: 'load'; url: string; opts: { persist?: boolean; backend?: 'auto' | 'webgpu' | 'cpu'; precision?: 'auto' | 'f16' | 'f32' } }
  | { op: 'upscale'; image: ImageData | ImageBitmap; opts: Record<string, unknown> }
  | { op: 'adjust'; lambdaPix: number; lambdaSem: number }
  | { op: 'cached' }
  | { op: 'evict'; url: string }
  | { op: 'capabilities'; opts?: { width?: number; height?: number } }
  | { op: 'cancel'; target: number };

export type Request = Op & { id: number };

export type Response =
  | { id: number; type: 'progress'; progress: unknown }
  | { id: number; type: 'done'; value: unknown }
  | { id: number; type: 'error'; message: string };
