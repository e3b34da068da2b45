fn main() -> std::process::ExitCode {
    match listrelay::cli::main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => listrelay::cli::failure(&e),
    }
}
