//! The command line: `cobrowse [--config PATH] [--listen ADDR] [--upstream URL]
//! [--log-format text|json]`,
//! `cobrowse check`, `cobrowse hash-password`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::Overrides;
use crate::logging::LogFormat;

#[derive(Debug, Parser)]
#[command(
    name = "cobrowse",
    version,
    about = "A co-browsing reverse proxy: customers and operators see and work on the same page, live."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Args, Clone, Default)]
pub struct RunArgs {
    /// The configuration file. Without it, ./proxy.toml is read when it
    /// exists and no --upstream is given.
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Address and port to listen on, e.g. 127.0.0.1:8080 (overrides `listen`).
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<String>,
    /// The upstream origin to front, e.g. http://127.0.0.1:9000 (overrides the
    /// file's sites and its demo).
    #[arg(long, value_name = "URL")]
    pub upstream: Option<String>,
    /// How log lines on standard error are written: `text` for people,
    /// `json` for one JSON object per line.
    #[arg(long, value_name = "FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a configuration file and exit: non-zero, naming the field and
    /// line, when it is wrong.
    Check {
        #[arg(long, value_name = "PATH", default_value = "proxy.toml")]
        config: PathBuf,
    },
    /// Read a password on standard input and print an argon2id hash for an
    /// `[[operators]]` entry.
    HashPassword,
}

impl RunArgs {
    pub fn overrides(&self) -> Overrides {
        Overrides {
            listen: self.listen.clone(),
            upstream: self.upstream.clone(),
        }
    }
}
