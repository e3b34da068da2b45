//! mlmmj list directories made by Debian's `mlmmj` (`mlmmj-make-ml`),
//! members added with `mlmmj-sub`, control files written as TUNABLES
//! describes: the importer's input, exactly as a real site has it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Whether mlmmj is installed here.
pub fn available() -> bool {
    Path::new("/usr/bin/mlmmj-make-ml").exists()
}

/// A spool directory holding lists.
pub struct Spool {
    pub dir: tempfile::TempDir,
}

impl Default for Spool {
    fn default() -> Self {
        Self::new()
    }
}

impl Spool {
    pub fn new() -> Spool {
        Spool {
            dir: tempfile::Builder::new()
                .prefix("mlmmj-test-")
                .tempdir()
                .expect("temp dir"),
        }
    }

    /// `mlmmj-make-ml -L NAME` for NAME@DOMAIN owned by `owner`; returns the
    /// list directory.
    pub fn make_list(&self, name: &str, domain: &str, owner: &str) -> PathBuf {
        let mut child = Command::new("/usr/bin/mlmmj-make-ml")
            .args(["-L", name, "-s"])
            .arg(self.dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run mlmmj-make-ml");
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(format!("{domain}\n{owner}\nen\n").as_bytes())
            .expect("answers");
        let out = child.wait_with_output().expect("mlmmj-make-ml");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.dir.path().join(name)
    }
}

/// `mlmmj-sub` quietly, forced: `how` is "" (regular), "-d" (digest) or
/// "-n" (no mail).
pub fn subscribe(list: &Path, address: &str, how: &str) {
    let mut cmd = Command::new("/usr/bin/mlmmj-sub");
    cmd.arg("-L")
        .arg(list)
        .args(["-a", address, "-f", "-q", "-s", "-U"]);
    if !how.is_empty() {
        cmd.arg(how);
    }
    let out = cmd.output().expect("run mlmmj-sub");
    assert!(
        out.status.success(),
        "mlmmj-sub {address}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes `control/NAME` (an empty text is a boolean set to true).
pub fn control(list: &Path, name: &str, text: &str) {
    std::fs::write(list.join("control").join(name), text).expect("control file");
}

/// `mlmmj-list -c` of one member set ("" regular, "-d", "-n").
pub fn count(list: &Path, how: &str) -> usize {
    let mut cmd = Command::new("/usr/bin/mlmmj-list");
    cmd.arg("-L").arg(list).arg("-c");
    if !how.is_empty() {
        cmd.arg(how);
    }
    let out = cmd.output().expect("run mlmmj-list");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}
