//! The `cobrowse` binary: parse the command line, load the configuration,
//! start tracing, run the server until Ctrl-C or SIGTERM.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use cobrowse::cli::{Cli, Command, RunArgs};
use cobrowse::config::Config;

fn main() -> ExitCode {
    cobrowse::allocator::keep_large_blocks_mapped();
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Check { config }) => check(&config),
        Some(Command::HashPassword) => hash_password(),
        None => run(cli.run),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cobrowse: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check(path: &Path) -> anyhow::Result<()> {
    let config = Config::load(path, &Default::default())?;
    println!(
        "{}: ok ({} site(s), {} operator(s))",
        path.display(),
        config.sites.len().max(config.demo as usize),
        config.operators.len()
    );
    Ok(())
}

fn hash_password() -> anyhow::Result<()> {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .context("reading the password from standard input")?;
    let password = input
        .strip_suffix('\n')
        .map(|p| p.strip_suffix('\r').unwrap_or(p))
        .unwrap_or(&input);
    anyhow::ensure!(
        !password.is_empty(),
        "the password on standard input is empty"
    );
    println!(
        "{}",
        cobrowse::password::hash(password).map_err(|e| anyhow::anyhow!("hashing: {e}"))?
    );
    Ok(())
}

fn load_config(args: &RunArgs) -> anyhow::Result<Config> {
    let overrides = args.overrides();
    let default = Path::new("proxy.toml");
    Ok(match &args.config {
        Some(path) => Config::load(path, &overrides)?,
        None if args.upstream.is_none() && default.is_file() => Config::load(default, &overrides)?,
        None => Config::from_overrides(&overrides)?,
    })
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    let config = load_config(&args)?;
    let audit = match &config.audit.path {
        Some(path) => Some(
            cobrowse::audit::open(path)
                .with_context(|| format!("`audit.path`: cannot open {}", path.display()))?,
        ),
        None => None,
    };
    let (layer, file) = audit.unzip();
    cobrowse::logging::init(args.log_format, layer);
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    // The signals are caught before the port is bound.
    let result = runtime.block_on(async {
        cobrowse::server::launch(config, cobrowse::server::shutdown_signal()).await
    });
    if let Some(file) = file {
        file.flush();
    }
    result
}
