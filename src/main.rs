fn main() -> std::process::ExitCode {
    cap_malloc_arenas();
    match listrelay::cli::main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => listrelay::cli::failure(&e),
    }
}

/// glibc gives each thread that allocates concurrently its own malloc arena
/// (up to 8 per core) and an arena keeps the peak it once held. The store's
/// work runs on tokio's blocking threads, so a member import of 100,000 left
/// the server at 389 MiB for a heap peak of 114 MiB. With one arena the same
/// import peaks at 122 MiB, with two at 179 MiB, and neither changed the
/// fan-out rate measured beside it (bench/README.md, issue 9).
fn cap_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}
