// Which wasm package the worker imports. There are two builds of the engine: pkg/ (WebGPU,
// with the CPU backend too) and pkg/cpu/ (the CPU backend only, a sixth of the bytes on the
// wire). A browser that will not run WebGPU never fetches the big one.

/** The WebGPU package (also runs on the CPU, for the harness and a failed device start). */
export const WEBGPU_PACKAGE = new URL('./pkg/onestep_sr.js', import.meta.url).href;
/** The CPU-only package. */
export const CPU_PACKAGE = new URL('./pkg/cpu/onestep_sr.js', import.meta.url).href;

let hardware: Promise<boolean> | null = null;

/** Whether this browser has a hardware WebGPU adapter: navigator.gpu, an adapter, and not a
 *  fallback (software) one such as SwiftShader. The rule of `backend: 'auto'` in
 *  src/web/device.rs (choose_device), asked the way src/web/glue.js asks. */
export function hardwareAdapter(): Promise<boolean> {
  hardware ??= (async () => {
    const gpu = (globalThis.navigator as { gpu?: { requestAdapter(o?: object): Promise<any> } } | undefined)?.gpu;
    if (!gpu) return false;
    try {
      const a = await gpu.requestAdapter({ powerPreference: 'high-performance' });
      return Boolean(a) && !(a.info?.isFallbackAdapter ?? a.isFallbackAdapter ?? false);
    } catch {
      return false;
    }
  })();
  return hardware;
}

/** The package's URL for a load with `backend`: WebGPU when it is forced or when 'auto' (the
 *  default) would run on WebGPU, else the CPU package. Anything else goes to the CPU package,
 *  which rejects an unknown backend with the same message as the other. */
export async function packageFor(backend: unknown = 'auto'): Promise<string> {
  if (backend === 'webgpu') return WEBGPU_PACKAGE;
  if (backend === 'auto' || backend === undefined || backend === '') {
    return (await hardwareAdapter()) ? WEBGPU_PACKAGE : CPU_PACKAGE;
  }
  return CPU_PACKAGE;
}
