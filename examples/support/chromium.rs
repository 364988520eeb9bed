//! Headless Chromium for the benchmark drivers (`browserbench`, `pageload`):
//! one profile directory of its own, launched with what keeps runs
//! comparable (no GPU, no QUIC, no background network or updates), and
//! closed with its directory removed.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use chromiumoxide::browser::{Browser, BrowserConfig};
use futures_util::StreamExt;
use tokio::task::JoinHandle;

pub struct Chromium {
    pub browser: Browser,
    handler: JoinHandle<()>,
    dir: PathBuf,
}

impl Chromium {
    /// Launches `executable` with a profile named after `driver`, and the
    /// driver's own `extra` switches.
    pub async fn launch(executable: &str, driver: &str, extra: &[&str]) -> Result<Chromium> {
        let dir = std::env::temp_dir().join(format!("cobrowse-{driver}-{}", std::process::id()));
        let mut args = vec![
            "disable-gpu",
            "disable-quic",
            "no-first-run",
            "disable-background-networking",
            "disable-component-update",
            "disable-sync",
            "disable-dev-shm-usage",
        ];
        args.extend_from_slice(extra);
        let config = BrowserConfig::builder()
            .chrome_executable(executable)
            .no_sandbox()
            .user_data_dir(&dir)
            .window_size(1280, 900)
            .launch_timeout(Duration::from_secs(30))
            .request_timeout(Duration::from_secs(60))
            .args(args)
            .build()
            .map_err(anyhow::Error::msg)?;
        let (browser, mut handler) = Browser::launch(config).await?;
        let handler = tokio::spawn(async move { while handler.next().await.is_some() {} });
        Ok(Chromium {
            browser,
            handler,
            dir,
        })
    }

    pub async fn close(mut self) {
        let _ = self.browser.close().await;
        let _ = self.browser.wait().await;
        self.handler.abort();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
