//! Native only, glibc only: keep freed memory for reuse instead of handing it back to the kernel.
//!
//! glibc serves every allocation over 32 MiB (its largest `M_MMAP_THRESHOLD`) by a fresh
//! `mmap` and unmaps it on free. The SD VAE's maps are up to 134 MB each (128 channels at
//! 512x512), several a layer, so every layer faulted in and zeroed its pages anew: `perf` put a
//! third of a full-size decode in the kernel's page-fault path. With `mmap` off and the trim
//! threshold at its largest, a freed block stays in the heap and the next layer's same-sized
//! block reuses it. Measured in docs/cpu.md; the process's peak memory barely moves (the
//! blocks freed are the ones reused).
//!
//! A process-wide allocator setting: the CLI and the examples call it first thing; the library
//! never does (a host application owns its allocator).

/// Turns glibc's large-block `mmap` off and its heap trimming to the largest threshold. A
/// no-op elsewhere (wasm's allocator never returns memory; macOS and musl are left alone).
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc's allocation policy; it is called before any thread
    // of ours starts and takes effect for later allocations.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX);
    }
}
