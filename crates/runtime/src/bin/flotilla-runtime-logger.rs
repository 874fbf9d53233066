//! `flotilla-runtime-logger`: the `binary://` log driver containerd's shim starts for each
//! container. Reads the container's stdout/stderr pipes (fds 3 and 4), writes rotated log
//! files, and keeps running independently of the agent. See `runtime::logs`.

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = runtime::logs::run_logger(&args);
    std::process::ExitCode::from(u8::try_from(code).unwrap_or(1))
}
