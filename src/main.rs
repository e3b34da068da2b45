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
/// the server at 389 MiB of which the heap peak was 114 MiB; with two arenas
/// the same import peaks at about a third of that (bench/README.md, issue 9).
/// Two, not one: the LMTP sessions and the fan-out still allocate side by side.
fn cap_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}
