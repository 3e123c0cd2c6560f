//! `ferrotel` command line: run, validate, components.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ferrotel::component::Kind;
use ferrotel::registry::FACTORIES;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "ferrotel",
    version,
    about = "A telemetry collector in the mould of the OpenTelemetry Collector"
)]
struct Cli {
    /// Config file (the OpenTelemetry Collector's YAML shape).
    #[arg(long, short = 'c', global = true, env = "FERROTEL_CONFIG")]
    config: Option<PathBuf>,
    /// Log level: error, warn, info, debug, trace (or a RUST_LOG-style filter). Overrides
    /// RUST_LOG and `service.telemetry.logs.level`.
    #[arg(long, global = true)]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the start-up checks on a config, list every error, exit 0 (valid) or 1.
    Validate,
    /// List every component type with its kind, signals and stability.
    Components {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn init_logs(cli_level: Option<&str>, config_level: Option<&str>) {
    use tracing_subscriber::EnvFilter;
    let filter = match (cli_level, std::env::var("RUST_LOG").ok(), config_level) {
        (Some(l), _, _) => EnvFilter::new(l),
        (None, Some(env), _) if !env.is_empty() => EnvFilter::new(env),
        (None, _, Some(l)) => EnvFilter::new(l),
        _ => EnvFilter::new("info"),
    };
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Control characters inside an event are escaped: values come from clients too.
        .with_writer(ferrotel::text::stderr_log_writer)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Components { json }) => {
            components(json);
            ExitCode::SUCCESS
        }
        Some(Command::Validate) => {
            init_logs(cli.log_level.as_deref().or(Some("warn")), None);
            let Some(path) = cli.config else {
                eprintln!("error: validate needs --config FILE");
                return ExitCode::from(2);
            };
            match ferrotel::pipeline::validate_file(&path) {
                Ok(v) => {
                    for w in &v.warnings {
                        eprintln!("warning: {w}");
                    }
                    println!("{}: valid", path.display());
                    ExitCode::SUCCESS
                }
                Err(errors) => {
                    for e in &errors {
                        eprintln!("error: {e}");
                    }
                    eprintln!("{}: {} error(s)", path.display(), errors.len());
                    ExitCode::FAILURE
                }
            }
        }
        None => {
            let Some(path) = cli.config else {
                eprintln!("error: --config FILE is required (try pipelines/local.yaml)");
                return ExitCode::from(2);
            };
            let validated = match ferrotel::pipeline::validate_file(&path) {
                Ok(v) => v,
                Err(errors) => {
                    init_logs(cli.log_level.as_deref(), None);
                    for e in &errors {
                        eprintln!("error: {e}");
                    }
                    eprintln!(
                        "{}: {} error(s); not starting",
                        path.display(),
                        errors.len()
                    );
                    return ExitCode::FAILURE;
                }
            };
            init_logs(
                cli.log_level.as_deref(),
                validated.config.telemetry.logs.level.as_deref(),
            );
            for w in &validated.warnings {
                tracing::warn!("{w}");
            }
            // Each connection is a file descriptor; listeners cap them well below this.
            ferrotel::net::server::raise_fd_limit();
            ferrotel::admission::set_release_hook(|| {
                // SAFETY: mi_collect takes no pointers; it may run on any thread at any time.
                unsafe { libmimalloc_sys::mi_collect(true) }
            });
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            rt.block_on(run(validated))
        }
    }
}

async fn run(validated: ferrotel::pipeline::Validated) -> ExitCode {
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "starting ferrotel");
    let running = match ferrotel::pipeline::start(validated).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    wait_for_signal().await;
    running.shutdown().await;
    ExitCode::SUCCESS
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stopping on ctrl-c only");
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("received SIGTERM"),
        _ = int.recv() => tracing::info!("received SIGINT"),
    }
}

fn components(json: bool) {
    let kinds = [
        Kind::Receiver,
        Kind::Processor,
        Kind::Exporter,
        Kind::Extension,
    ];
    if json {
        let list: Vec<_> = FACTORIES
            .iter()
            .map(|f| {
                serde_json::json!({
                    // `aliases`: every other name accepted; `deprecated`: those that warn.
                    "kind": f.kind, "type": f.name,
                    "aliases": f.names().skip(1).collect::<Vec<_>>(),
                    "deprecated": f.deprecated,
                    "signals": f.signals, "stability": f.stability,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&list).unwrap_or_default()
        );
        return;
    }
    for kind in kinds {
        println!("{}:", kind.section());
        for f in FACTORIES.iter().filter(|f| f.kind == kind) {
            let signals = f
                .signals
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            let mut notes = Vec::new();
            if !f.aliases.is_empty() {
                notes.push(format!("alias: {}", f.aliases.join(", ")));
            }
            if !f.deprecated.is_empty() {
                notes.push(format!("deprecated: {}", f.deprecated.join(", ")));
            }
            let aliases = if notes.is_empty() {
                String::new()
            } else {
                format!(" ({})", notes.join("; "))
            };
            let signals = if signals.is_empty() {
                "-".to_string()
            } else {
                signals
            };
            println!(
                "  {:<16} {:<24} {:?}{aliases}",
                f.name, signals, f.stability
            );
        }
    }
}
