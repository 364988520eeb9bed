//! What the process gives back to the system once it is done with memory.
//!
//! glibc's allocator raises its mmap threshold to the size of the largest
//! block freed so far (up to 32 MiB). After the first password check
//! (argon2id works in 19 MiB) or the first large buffer, blocks of that size
//! come from the heap of whichever thread asked instead of being mapped, and
//! a heap is rarely given back: every thread that ever checked a password
//! kept its 19 MiB (18 logins left a process 330 MiB larger). A fixed
//! threshold keeps large blocks mapped, so freeing one returns it at once.
//! Small allocations are unaffected.
//!
//! The threshold sits above the largest buffer the proxy takes and gives
//! back for every frame it passes on: hyper reads a fast upstream body into
//! buffers of up to 408 KiB. Mapped, each of those was mapped, faulted in
//! page by page, zeroed and unmapped again, a tenth of the time of a large
//! download (docs/performance.md, B4). The trim threshold is raised with
//! it, or the same buffer freed at the top of a heap would be handed back
//! and faulted in again at the next read.

/// Large blocks above this many bytes are mapped and unmapped on their own.
const MMAP_THRESHOLD: i32 = 512 * 1024;

/// Free memory at the top of a heap beyond this many bytes is given back.
const TRIM_THRESHOLD: i32 = 1024 * 1024;

/// Called once at start, before threads exist.
pub fn keep_large_blocks_mapped() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only sets an allocator parameter; it is called before
    // the runtime starts any thread.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}
