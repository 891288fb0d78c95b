// The upload page: a queue of images (choose, drop, paste, or shared into the installed app),
// a model picker from the catalog (size and cached state shown before anything is fetched),
// output scale or width, PiSA-SR's sliders with live previews, progress with Cancel, the
// compare view, Download / Download all (ZIP), the model manager, and the offline PWA.
//
// This file wires the features together; each lives in its own module: input.ts (choose,
// drop, paste, share), queue.ts (the queue, Download all), picker.ts (the model picker),
// controls.ts (output size, Upscale, Cancel), sliders.ts (PiSA-SR's sliders and presets),
// manager.ts (models on this device), diffusion.ts (Add a diffusion model), offline.ts (the service worker), with the shared state
// in state.ts and the shared DOM helpers in ui.ts.
import { wireControls } from './controls';
import { wireDiffusion } from './diffusion';
import { takeShared, wireInput } from './input';
import { refreshCache, setupPersist, showCapabilities } from './manager';
import { serviceWorker } from './offline';
import { readCatalog, wirePicker } from './picker';
import { wireQueue } from './queue';
import { showLambdas, wireSliders } from './sliders';
import { mountCompare, syncButtons } from './ui';

// ---- Start --------------------------------------------------------------------------------

/** Once the page has loaded and is idle (or after a while, where requestIdleCallback is
 *  missing): what needs the engine, whose wasm (tens of MB) must not hold up the page. */
function whenIdle(fn: () => void) {
  const go = () => ('requestIdleCallback' in self ? requestIdleCallback(fn, { timeout: 3000 }) : setTimeout(fn, 1000));
  if (document.readyState === 'complete') go(); else addEventListener('load', go, { once: true });
}

async function main() {
  // Everything a person uses first works without the engine: choosing, dropping or pasting
  // an image starts it (its header is checked there), as does Upscale; otherwise it starts
  // when the page is idle, to say what it runs on and which models are stored. The service
  // worker is registered then too.
  mountCompare();
  wireInput();
  wireControls();
  wireQueue();
  wirePicker();
  wireSliders();
  wireDiffusion();
  showLambdas();
  setupPersist();
  await readCatalog();
  await takeShared();
  syncButtons();
  whenIdle(() => {
    // The service worker's install caches the shell and the wasm: not while the page loads.
    serviceWorker();
    showCapabilities();
    refreshCache();
  });
}

if (typeof document !== 'undefined' && document.getElementById('compare')) main();
