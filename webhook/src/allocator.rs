//! The allocator of the shipped binary and of the benchmarks (every handler
//! they compare runs on it): mimalloc, as in claworc-sshd. glibc's malloc and
//! free were a quarter of a review's instructions, and the static (musl)
//! build's allocator is slower still.
//!
//! Each binary declares it (a library cannot):
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOCATOR: claworc_webhook::allocator::Allocator = claworc_webhook::allocator::Allocator;
//! ```
//!
//! and calls [`configure`] first thing in `main`.

pub use mimalloc::MiMalloc as Allocator;

unsafe extern "C" {
    /// mimalloc's `mi_option_set` (linked in by the mimalloc crate).
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}

/// `mi_option_arena_eager_commit` (mimalloc 3's `mimalloc.h`).
const MI_OPTION_ARENA_EAGER_COMMIT: std::ffi::c_int = 4;

/// Arenas committed on demand, so that freed memory goes back to the system
/// (eager, the default on Linux, keeps the RSS at its peak).
pub fn configure() {
    // SAFETY: sets a plain integer option; no memory is touched.
    unsafe { mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0) };
}
