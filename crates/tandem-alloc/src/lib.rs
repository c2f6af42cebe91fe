//! The global allocator of `tandem` and `tandem-bench`.
//!
//! mimalloc instead of glibc's malloc: rows are allocated on a reader task and freed on the
//! applier's, and glibc spent half of tandem's CPU samples in `malloc`, `free` and
//! `malloc_consolidate` on that pattern (BENCHMARKS.md, optimisation 8). Built without
//! transparent huge pages (`no_thp`): with them, the arena mimalloc commits at start-up was
//! backed by 2 MiB pages and the peak RSS of a streaming run grew by half (59 → 90 MiB);
//! and [`tune`] makes it give freed pages back after 100 ms instead of a second (at once cost
//! an initial copy a fifth more CPU in page faults, for 9 MiB less at its peak).
//!
//! An operator can still override the setting with mimalloc's own environment variable
//! (`MIMALLOC_PURGE_DELAY=1000`, say): [`tune`] leaves it alone when the variable is set.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

// mimalloc 3's `mi_option_e` (include/mimalloc.h); libmimalloc-sys names only some of them
// ("for stability reasons"). `tests::option_number_is_mimallocs` checks it against the
// built library's default.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Settings [`tune`] applies: (environment variable, option, value). Only options mimalloc
/// reads as it goes belong here: those it reads while starting up (before `main`) would
/// need the environment variable.
const SETTINGS: [(&str, libmimalloc_sys::mi_option_t, std::os::raw::c_long); 1] = [
    // Freed pages go back to the system after 100 ms, not a second.
    ("MIMALLOC_PURGE_DELAY", PURGE_DELAY, 100),
];

/// Applies tandem's allocator settings. Call first thing in `main`, before other threads.
pub fn tune() {
    for (variable, option, value) in SETTINGS {
        if std::env::var_os(variable).is_none() {
            // SAFETY: `mi_option_set` only stores the value in mimalloc's option table; it is
            // called before any other thread exists (the caller's contract), which is what
            // mimalloc asks of it ("not thread safe").
            #[allow(unsafe_code)]
            unsafe {
                libmimalloc_sys::mi_option_set(option, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(option: libmimalloc_sys::mi_option_t) -> std::os::raw::c_long {
        // SAFETY: reads mimalloc's option table; this test is the only thread touching it.
        #[allow(unsafe_code)]
        unsafe {
            libmimalloc_sys::mi_option_get(option)
        }
    }

    /// The number above names the option meant: before `tune` it holds mimalloc 3's default
    /// purge delay (1,000 ms), afterwards the value `tune` sets.
    #[test]
    fn option_number_is_mimallocs() {
        for (variable, _, _) in SETTINGS {
            assert!(std::env::var_os(variable).is_none(), "{variable} is set");
        }
        assert_eq!(get(PURGE_DELAY), 1000);
        tune();
        assert_eq!(get(PURGE_DELAY), 100);
    }
}
