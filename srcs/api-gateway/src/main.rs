// Proxying allocates and frees buffers and header maps on every request: with jemalloc the
// gateway spends ~10% less CPU per request than with glibc's malloc, at about the same RSS
// (mimalloc was as fast but took 37 MB; BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    common::lifecycle::run::<api_gateway::startup::Application>().await
}
