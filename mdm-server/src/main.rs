//! The `mdm-server` binary: a thin shell over the library's command line.

// jemalloc returns freed memory to the system more readily than the system allocator does
// under many connections and threads.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    mdm_server::cli::main()
}
