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
//! The threshold is above the blocks every response allocates and frees
//! again: hyper's read buffer of a streamed body (up to about 400 KiB), a
//! codec's window and tables (a few hundred KiB). Mapped, each of them cost
//! page faults and the kernel's zeroing of every page on every response
//! (docs/performance.md, B2 and B4); from the heap, the next response
//! reuses the block the last one freed. What the heap keeps is bounded by
//! how many of them are in use at once, and blocks of a password check are
//! still far above it.

/// Blocks above this many bytes are mapped and unmapped on their own.
const MMAP_THRESHOLD: i32 = 1024 * 1024;

/// Called once at start, before threads exist.
pub fn keep_large_blocks_mapped() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only sets an allocator parameter; it is called before
    // the runtime starts any thread.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}
