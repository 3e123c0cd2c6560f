//! Compiles the third-party wire formats in `proto/` with protox (pure Rust, no system `protoc`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/prometheus/remote.proto",
        "proto/prometheus/metrics.proto",
        "proto/jaeger/model.proto",
        "proto/jaeger/collector.proto",
        "proto/loki/push.proto",
        "proto/zipkin/zipkin.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    // Clients for the exporters; servers only so that tests can stand in for the backends.
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
