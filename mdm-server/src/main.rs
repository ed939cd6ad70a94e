//! The `mdm-server` binary: a thin shell over the library's command line.

fn main() -> std::process::ExitCode {
    mdm_server::cli::main()
}
