//! Headless Chromium driven over WebDriver, for the pages' tests: Debian's
//! `chromedriver` on a free loopback port, which starts `/usr/bin/chromium`
//! headless with a fresh profile and the flags that keep it off the network
//! (without them the closed network makes it slow). Both are killed by PID
//! on drop, the browser found by its unique profile directory.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder};

use super::{pid_gone, poll_until, ports, terminate};

/// A chromedriver and the WebDriver session it runs.
pub struct Browser {
    /// The WebDriver session (one Chromium).
    pub client: Client,
    driver: Child,
    /// The profile directory: Chromium's processes name it, which is how
    /// they are found to be killed.
    profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium.
    pub async fn start() -> Browser {
        let port = ports::free_port();
        let driver = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian's chromium-driver) is needed");
        let up = poll_until(Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "chromedriver did not listen on {port}");
        let profile = tempfile::Builder::new()
            .prefix("listrelay-chromium-")
            .tempdir()
            .expect("profile dir");
        let args = [
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-dev-shm-usage".into(),
            "--window-size=1200,900".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({"binary": "/usr/bin/chromium", "args": args}),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a WebDriver session with headless Chromium");
        Browser {
            client,
            driver,
            profile,
        }
    }

    /// Saves a screenshot as `target/screenshots/NAME.png` for a person to
    /// look at.
    pub async fn screenshot(&self, name: &str) {
        let dir = screenshots();
        let _ = std::fs::create_dir_all(&dir);
        if let Ok(png) = self.client.screenshot().await {
            let _ = std::fs::write(dir.join(format!("{name}.png")), png);
        }
    }

    /// Ends the session (Chromium quits), then the driver.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
        // Drop kills what is left.
    }

    /// The PIDs of the Chromium processes using this browser's profile.
    fn chromium_pids(&self) -> Vec<i32> {
        let needle = format!("--user-data-dir={}", self.profile.path().display());
        let Ok(rd) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        rd.flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .map(|c| String::from_utf8_lossy(&c).contains(&needle))
                    .unwrap_or(false)
            })
            .collect()
    }
}

/// Where screenshots go: `target/screenshots/` (or under CARGO_TARGET_DIR).
pub fn screenshots() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
        .join("screenshots")
}

impl Drop for Browser {
    fn drop(&mut self) {
        for pid in self.chromium_pids() {
            terminate(pid, || pid_gone(pid));
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
