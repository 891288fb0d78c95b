//! Memory accounting: the global allocator that counts the wasm heap's live bytes, and the
//! `memoryStats()` export, which also reports burn's allocator on the WebGPU device.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use wasm_bindgen::prelude::*;

use super::device::GPU;
use super::glue::object;

/// The system allocator, counting live bytes for `memoryStats()`: the wasm Memory never
/// shrinks, so only this count shows whether a run gave back what it took.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        unsafe { System.dealloc(p, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, layout, new_size) };
        if !q.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            LIVE.fetch_add(new_size, Ordering::Relaxed);
        }
        q
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Bytes allocated in the wasm heap and not yet freed.
fn heap_bytes() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// Memory now: the wasm heap's live bytes and the Memory's size, and what burn's allocator
/// holds on this thread's WebGPU device (where it reports it). A long session compares them
/// between runs: they must not grow.
#[wasm_bindgen(js_name = memoryStats, unchecked_return_type = "MemoryStats")]
pub fn memory_stats() -> JsValue {
    let memory: js_sys::WebAssembly::Memory = wasm_bindgen::memory().unchecked_into();
    let wasm = memory.buffer().unchecked_into::<js_sys::ArrayBuffer>().byte_length() as f64;
    let mut pairs: Vec<(&str, JsValue)> = vec![("heapBytes", (heap_bytes() as f64).into()), ("wasmBytes", wasm.into())];
    if let Some(Ok(gpu)) = GPU.with(|g| g.borrow().clone())
        && let Some(u) = gpu.device.memory_pool_usage()
    {
        pairs.push((
            "gpu",
            object(&[
                ("allocations", (u.number_allocs as f64).into()),
                ("bytesInUse", (u.bytes_in_use as f64).into()),
                ("bytesReserved", (u.bytes_reserved as f64).into()),
            ]),
        ));
    }
    object(&pairs)
}
