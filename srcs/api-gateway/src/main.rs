// Proxying allocates and frees buffers and header maps on every request: with jemalloc the
// gateway spends ~10% less CPU per request than with glibc's malloc, at about the same RSS
// (mimalloc was as fast but took 37 MB; BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc returns freed pages to the system only as later allocations pass by, so after a
/// burst of connections an idle gateway kept its peak (157 MB after 2,000 clients, for good).
/// A background thread returns them within the decay time (10 s) instead: 38 MB 15 s later.
/// Read by jemalloc at start (`_RJEM_MALLOC_CONF` in the environment still overrides it).
#[used]
#[unsafe(export_name = "_rjem_malloc_conf")]
static JEMALLOC_CONF: JemallocConf =
    JemallocConf(c"background_thread:true,max_background_threads:1".as_ptr());

/// A C string pointer, as jemalloc's `malloc_conf` symbol is.
#[repr(transparent)]
struct JemallocConf(*const std::ffi::c_char);
// SAFETY: it points to a static, immutable C string.
unsafe impl Sync for JemallocConf {}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    common::lifecycle::run::<api_gateway::startup::Application>().await
}
