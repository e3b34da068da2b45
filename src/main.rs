fn main() -> std::process::ExitCode {
    match listrelay::cli::main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("listrelay: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
