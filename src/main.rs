//! `ferrotel` command line: run (SIGHUP reloads), validate, print-config, components,
//! featuregate, tap.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ferrotel::component::Kind;
use ferrotel::config::{ListMerge, Sources, render};
use ferrotel::featuregate::{self, Gates};
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
    /// A config source, repeatable and merged in order (mappings key by key, lists replaced):
    /// a file path, `file:PATH`, `env:VAR` (the variable holds the YAML) or `yaml:INLINE`
    /// (keys joined by `::`, e.g. `yaml:exporters::debug::verbosity: detailed`).
    #[arg(long, short = 'c', global = true, env = "FERROTEL_CONFIG")]
    config: Vec<String>,
    /// Sets one value on top of every --config: `key::path=value` (the value is YAML),
    /// repeatable, e.g. `--set=processors::batch::timeout=2s`.
    #[arg(long, global = true)]
    set: Vec<String>,
    /// Feature gates to enable (`id`, `+id`) or disable (`-id`), comma-separated and
    /// repeatable; `ferrotel featuregate` lists them.
    #[arg(long = "feature-gates", global = true)]
    feature_gates: Vec<String>,
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
    /// Print the config as resolved: every source merged, every `${...}` expanded.
    PrintConfig {
        /// `redacted` (default) hides passwords, tokens, keys and header values.
        #[arg(long, default_value = "redacted", value_parser = ["redacted", "unredacted"])]
        mode: String,
        /// `yaml` (default) or `json`.
        #[arg(long, default_value = "yaml", value_parser = ["yaml", "json"])]
        format: String,
    },
    /// List the feature gates ferrotel knows, with their stage and whether they are on.
    Featuregate {
        /// Show one gate only.
        id: Option<String>,
    },
    /// Print a sample of what flows through a running collector at a point of a pipeline, in
    /// the debug exporter's format (the collector's config must list the `tap` extension).
    Tap {
        /// The pipeline: `traces`, `logs/name`, ...
        #[arg(long)]
        pipeline: String,
        /// A component of the pipeline (`batch`, `otlp`, or `exporter:otlp` when a name is
        /// ambiguous); without it, what the pipeline's receivers put in.
        #[arg(long)]
        component: Option<String>,
        /// Stop after at least this many spans, data points or log records (whole batches).
        #[arg(long, default_value_t = 100)]
        limit: u64,
        /// The `tap` extension's endpoint: a loopback `host:port` or `unix:///path`.
        #[arg(long, default_value = "localhost:55690")]
        endpoint: String,
        /// `basic`, `normal` (default) or `detailed`.
        #[arg(long, default_value = "normal", value_parser = ["basic", "normal", "detailed"])]
        verbosity: String,
    },
}

type LogReload = ferrotel::logs::SetLevel;

fn tap(
    pipeline: &str,
    component: Option<String>,
    limit: u64,
    endpoint: &str,
    verbosity: &str,
) -> ExitCode {
    use ferrotel::signal::text::Verbosity;
    let endpoint = match ferrotel::tap::Endpoint::parse(endpoint) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let req = ferrotel::tap::Request {
        pipeline: pipeline.to_string(),
        component,
        limit,
        verbosity: match verbosity {
            "basic" => Verbosity::Basic,
            "detailed" => Verbosity::Detailed,
            _ => Verbosity::Normal,
        },
    };
    match ferrotel::tap::run_client(&endpoint, &req, &mut std::io::stdout().lock()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Logs for the commands that only read a config: warnings and errors on stderr.
fn init_tool_logs(cli_level: Option<&str>) {
    let quiet = ferrotel::config::TelemetryLogs {
        sampling: ferrotel::config::LogSampling {
            enabled: false,
            ..Default::default()
        },
        ..Default::default()
    };
    if let Err(e) = ferrotel::logs::init(cli_level.or(Some("warn")), &quiet, &Default::default()) {
        eprintln!("error: {e}");
    }
}

/// What every command that reads a config needs: its sources, with the gates applied.
fn sources(cli: &Cli) -> Result<Sources, ExitCode> {
    let gates = match Gates::parse(&cli.feature_gates) {
        Ok(g) => g,
        Err(errors) => {
            for e in errors {
                eprintln!("error: {e}");
            }
            return Err(ExitCode::from(2));
        }
    };
    if cli.config.is_empty() {
        eprintln!(
            "error: --config FILE is required (try pipelines/local.yaml); it may be repeated and take `file:`, `env:` or `yaml:` URIs"
        );
        return Err(ExitCode::from(2));
    }
    Ok(Sources {
        uris: cli.config.clone(),
        sets: cli.set.clone(),
        lists: if gates.enabled(featuregate::MERGE_APPEND) {
            ListMerge::AppendComponentLists
        } else {
            ListMerge::Replace
        },
    })
}

fn print_errors(label: &str, errors: &[ferrotel::config::ConfigError], suffix: &str) {
    for e in errors {
        eprintln!("error: {e}");
    }
    eprintln!("{label}: {} error(s){suffix}", errors.len());
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Some(Command::Components { json }) => {
            components(*json);
            return ExitCode::SUCCESS;
        }
        Some(Command::Featuregate { id }) => return featuregates(id.as_deref()),
        Some(Command::Tap {
            pipeline,
            component,
            limit,
            endpoint,
            verbosity,
        }) => return tap(pipeline, component.clone(), *limit, endpoint, verbosity),
        _ => {}
    }
    let sources = match sources(&cli) {
        Ok(s) => s,
        Err(code) => return code,
    };
    match &cli.command {
        Some(Command::Validate) => {
            init_tool_logs(cli.log_level.as_deref());
            match ferrotel::pipeline::validate_sources(&sources) {
                Ok(v) => {
                    for w in &v.warnings {
                        eprintln!("warning: {w}");
                    }
                    println!("{}: valid", sources.label());
                    ExitCode::SUCCESS
                }
                Err(errors) => {
                    print_errors(&sources.label(), &errors, "");
                    ExitCode::FAILURE
                }
            }
        }
        Some(Command::PrintConfig { mode, format }) => {
            init_tool_logs(cli.log_level.as_deref());
            let mut errors = ferrotel::config::Errors::for_sources(&sources);
            let env = |n: &str| std::env::var(n).ok();
            let root = ferrotel::config::resolve(&sources, &env, &mut errors);
            match root {
                Some(root) if errors.is_empty() => {
                    let root = if mode == "redacted" {
                        render::redacted(&root)
                    } else {
                        root
                    };
                    if format == "json" {
                        println!("{}", render::json_text(&root));
                    } else {
                        print!("{}", render::yaml_text(&root));
                    }
                    ExitCode::SUCCESS
                }
                _ => {
                    print_errors(&sources.label(), &errors.list, "");
                    ExitCode::FAILURE
                }
            }
        }
        _ => {
            // The logger is set up from the config, so what reading it warns (an unset
            // variable) is kept and logged once the logger exists.
            let (result, early) =
                capture_warnings(|| ferrotel::pipeline::validate_sources(&sources));
            let validated = match result {
                Ok(v) => v,
                Err(errors) => {
                    init_tool_logs(cli.log_level.as_deref());
                    print_errors(&sources.label(), &errors, "; not starting");
                    return ExitCode::FAILURE;
                }
            };
            let set_level = match ferrotel::logs::init(
                cli.log_level.as_deref(),
                &validated.config.telemetry.logs,
                &validated.config.telemetry.resource,
            ) {
                Ok(f) => f,
                Err(e) => {
                    eprintln!("error: service::telemetry::logs: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let t = &validated.config.telemetry;
            if t.traces.level.as_deref() != Some("none") && !t.traces.processors.is_empty() {
                let exports = ferrotel::selfexport::exports_of(&t.traces.processors, &t.resource);
                if let Err(e) = ferrotel::selfexport::start_traces(exports) {
                    eprintln!("error: service::telemetry::traces: {e}");
                    return ExitCode::FAILURE;
                }
            }
            for w in early.iter().chain(&validated.warnings) {
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
            rt.block_on(run(sources, validated, set_level))
        }
    }
}

/// `mi_option_arena_eager_commit` in mimalloc v2's `mi_option_t` (not exported by the crate).
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;

/// mimalloc commits its arenas up front on an overcommitting kernel (its default), and with
/// transparent huge pages they are resident in 2 MiB pieces: 5 MiB of an idle collector.
/// Committed on use instead, idle RSS is what is used. This must run before the first
/// allocation creates an arena, so it is a constructor that runs before the default-priority
/// ones (mimalloc's own and the Rust runtime's).
extern "C" fn lazy_arena_commit() {
    // SAFETY: sets a number in mimalloc's option table; no pointers, no allocation.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0) };
}

#[used]
#[unsafe(link_section = ".init_array.00101")]
static LAZY_ARENA_COMMIT: extern "C" fn() = lazy_arena_commit;

async fn run(
    sources: Sources,
    validated: ferrotel::pipeline::Validated,
    set_level: LogReload,
) -> ExitCode {
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "starting ferrotel");
    let mut running = match ferrotel::pipeline::start(validated).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers; stopping on ctrl-c only");
        let _ = tokio::signal::ctrl_c().await;
        running.shutdown().await;
        return ExitCode::SUCCESS;
    };
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("received SIGTERM"); break; }
            _ = int.recv() => { tracing::info!("received SIGINT"); break; }
            _ = hup.recv() => reload(&sources, &mut running, &set_level).await,
        }
    }
    running.shutdown().await;
    ExitCode::SUCCESS
}

/// SIGHUP: the same sources read again; a config with errors leaves the running one as it is.
async fn reload(
    sources: &Sources,
    running: &mut ferrotel::pipeline::Running,
    set_level: &LogReload,
) {
    tracing::info!(
        "received SIGHUP: reloading the config from {}",
        sources.label()
    );
    let started = std::time::Instant::now();
    let validated = match ferrotel::pipeline::validate_sources(sources) {
        Ok(v) => v,
        Err(errors) => {
            for e in &errors {
                tracing::error!("{e}");
            }
            tracing::error!(
                "the reloaded config has {} error(s); the running config stays in place",
                errors.len()
            );
            return;
        }
    };
    for w in &validated.warnings {
        tracing::warn!("{w}");
    }
    if let Some(level) = validated.config.telemetry.logs.level.as_deref() {
        set_level(level);
    }
    match running.reload(validated).await {
        Ok(summary) => tracing::info!(
            elapsed = ?started.elapsed(),
            "config reloaded; {summary}"
        ),
        Err(e) => tracing::error!("config reloaded with an error: {e}; the rest of it is running"),
    }
}

/// Runs `f` with a logger that keeps its warning lines (message and fields, no time or level).
fn capture_warnings<T>(f: impl FnOnce() -> T) -> (T, Vec<String>) {
    use std::sync::{Arc, Mutex};
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut v) = self.0.lock() {
                v.extend_from_slice(b);
            }
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::WARN)
        .without_time()
        .with_level(false)
        .with_target(false)
        .with_ansi(false)
        .finish();
    let out = tracing::subscriber::with_default(subscriber, f);
    let text = buf
        .0
        .lock()
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .unwrap_or_default();
    (out, text.lines().map(|l| l.trim().to_owned()).collect())
}

fn featuregates(id: Option<&str>) -> ExitCode {
    let defaults = Gates::default();
    let mut found = false;
    for g in featuregate::GATES
        .iter()
        .filter(|g| id.is_none_or(|i| i == g.id))
    {
        found = true;
        println!(
            "{}\t{}\t{}\t{}",
            g.id,
            serde_json::to_value(g.stage)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            if defaults.enabled(g.id) { "on" } else { "off" },
            g.description
        );
    }
    if found {
        ExitCode::SUCCESS
    } else {
        eprintln!("error: no such feature gate `{}`", id.unwrap_or_default());
        ExitCode::FAILURE
    }
}

fn components(json: bool) {
    let kinds = [
        Kind::Receiver,
        Kind::Processor,
        Kind::Exporter,
        Kind::Extension,
        Kind::Connector,
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
            let stability = serde_json::to_value(f.stability)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            println!("  {:<24} {:<24} {stability}{aliases}", f.name, signals);
        }
    }
}
