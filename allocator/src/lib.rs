//! The allocator of claworc's binaries, claworc-webhook and claworc-sshd (and
//! of the webhook's benchmarks, so that every handler they compare runs on it):
//! mimalloc. musl's allocator (the static builds) made claworc-sshd's tunnels and
//! SFTP much slower, and glibc's malloc and free were a quarter of a review's
//! instructions.
//!
//! A library cannot choose the allocator: each binary says
//! `claworc_allocator::global_allocator!();` once, at its root.

pub use mimalloc::MiMalloc as Allocator;

unsafe extern "C" {
    /// mimalloc's `mi_option_set` (linked in by the mimalloc crate).
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}

/// `mi_option_arena_eager_commit` (mimalloc 3's `mimalloc.h`).
const MI_OPTION_ARENA_EAGER_COMMIT: std::ffi::c_int = 4;

/// Arenas committed on demand, so that freed memory goes back to the system.
/// With the default (eager on Linux) the webhook's RSS was 15.7 MiB idle and
/// 31 MiB after 10 000 requests, against 8 and 16.6 MiB so; claworc-sshd's
/// stayed at 80 MiB after a 512 MiB SFTP transfer instead of 11 MiB. It must run before
/// the first allocation, which the Rust runtime makes before `main`: hence
/// [`global_allocator!`] calls it from `.init_array`.
pub extern "C" fn configure() {
    // SAFETY: sets a plain integer option; no memory is touched.
    unsafe { mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0) };
}

/// mimalloc as the global allocator, configured ([`configure`]) before the
/// program's first allocation.
#[macro_export]
macro_rules! global_allocator {
    () => {
        #[global_allocator]
        static ALLOCATOR: $crate::Allocator = $crate::Allocator;

        // Run by the C runtime before `main` and the Rust runtime's first
        // allocation (ELF; elsewhere mimalloc keeps its defaults).
        #[cfg(target_os = "linux")]
        #[used]
        #[unsafe(link_section = ".init_array")]
        static CONFIGURE_ALLOCATOR: extern "C" fn() = $crate::configure;
    };
}
