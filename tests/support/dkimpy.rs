//! The independent signer and verifier: Debian's python3-dkim (dkimpy),
//! through tests/support/dkimpy_tool.py, with every DNS lookup answered by
//! the test DNS server ([`super::dns`]).
//!
//! * [`AuthorDomain`] / [`authors`]: the author domains of the tests, each
//!   with its own RSA-2048 key (made once per test process with `openssl`,
//!   as an author's MTA would have one) and its DMARC policy;
//! * [`author_zone`]: their DKIM, SPF and DMARC records as a [`Zone`];
//! * [`sign`]: signs a post as the author's MTA would (`dkim.sign`,
//!   relaxed/relaxed);
//! * [`arc_sign`]: adds an ARC set as an upstream forwarder would;
//! * [`verify`]: every DKIM signature and the ARC chain (`dkim.verify`,
//!   `dkim.arc_verify`), as a receiver would check a copy.

use super::dns::Zone;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The python interpreter that has Debian's dkimpy (not a pyenv shim).
const PYTHON: &str = "/usr/bin/python3";

/// The SPF-authorised address of every author domain (TEST-NET-1).
pub const AUTHOR_MTA_IP: &str = "192.0.2.10";

/// The selector of the author keys.
pub const AUTHOR_SELECTOR: &str = "sel1";

/// `None` when dkimpy is usable, else what to install.
pub fn missing() -> Option<String> {
    let ok = Command::new(PYTHON)
        .args(["-c", "import dkim, dns.message, authres"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    (!ok).then(|| {
        "dkimpy is not installed: run scripts/install-test-deps (python3-dkim, python3-authres)"
            .to_string()
    })
}

/// An author domain of the tests.
#[derive(Debug, Clone)]
pub struct AuthorDomain {
    /// e.g. `reject.test`.
    pub domain: String,
    /// The DMARC record, `None` for the domain that publishes none.
    pub dmarc: Option<String>,
    /// PEM private key (PKCS#1) for dkimpy.
    pub key_file: PathBuf,
    /// The `v=DKIM1; k=rsa; p=…` record at `sel1._domainkey.DOMAIN`.
    pub dkim_txt: String,
}

struct Authors {
    _dir: tempfile::TempDir,
    domains: Vec<AuthorDomain>,
}

static AUTHORS: OnceLock<Result<Authors, String>> = OnceLock::new();

fn openssl(args: &[&str]) -> Result<Vec<u8>, String> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .map_err(|e| format!("openssl: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(out.stdout)
}

fn make_author(dir: &Path, domain: &str, dmarc: Option<&str>) -> Result<AuthorDomain, String> {
    let key_file = dir.join(format!("{domain}.pem"));
    let k = key_file.to_string_lossy().to_string();
    openssl(&["genrsa", "-traditional", "-out", &k, "2048"])?;
    let der = openssl(&["rsa", "-in", &k, "-pubout", "-outform", "DER"])?;
    let b64 = openssl_base64(&der)?;
    Ok(AuthorDomain {
        domain: domain.to_string(),
        dmarc: dmarc.map(str::to_string),
        key_file,
        dkim_txt: format!("v=DKIM1; k=rsa; p={b64}"),
    })
}

fn openssl_base64(data: &[u8]) -> Result<String, String> {
    let mut child = Command::new("openssl")
        .args(["base64", "-A"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("openssl base64: {e}"))?;
    child
        .stdin
        .take()
        .ok_or("no stdin")?
        .write_all(data)
        .map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The author domains: `reject.test` (p=reject), `quarantine.test`
/// (p=quarantine), `none.test` (p=none) and `nodmarc.test` (no DMARC
/// record). Keys are made once per test process.
pub fn authors() -> Result<&'static [AuthorDomain], String> {
    let a = AUTHORS.get_or_init(|| {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let domains = [
            ("reject.test", Some("v=DMARC1; p=reject; adkim=r; aspf=r")),
            ("quarantine.test", Some("v=DMARC1; p=quarantine")),
            ("none.test", Some("v=DMARC1; p=none")),
            ("nodmarc.test", None),
        ]
        .iter()
        .map(|(d, p)| make_author(dir.path(), d, *p))
        .collect::<Result<Vec<_>, _>>()?;
        Ok(Authors { _dir: dir, domains })
    });
    a.as_ref()
        .map(|a| a.domains.as_slice())
        .map_err(Clone::clone)
}

/// One author domain by name.
pub fn author(domain: &str) -> AuthorDomain {
    authors()
        .expect("author keys")
        .iter()
        .find(|a| a.domain == domain)
        .unwrap_or_else(|| panic!("no author domain {domain}"))
        .clone()
}

/// Gives `lr`'s site an RSA and an Ed25519 key for `domain` (selectors
/// `rsa1` and `ed1`, as an operator would with `listrelay dkim keygen`) and
/// returns [`author_zone`] with the records `dkim list` says to publish.
pub fn zone_with_list_keys(lr: &super::server::Listrelay, domain: &str) -> Zone {
    lr.cli_ok(&["dkim", "keygen", domain, "--selector", "rsa1"]);
    lr.cli_ok(&[
        "dkim",
        "keygen",
        domain,
        "--selector",
        "ed1",
        "--algorithm",
        "ed25519",
    ]);
    let mut zone = author_zone().expect("author keys");
    for line in lr.cli_ok(&["--json", "dkim", "list"]).lines() {
        let k: serde_json::Value = serde_json::from_str(line).unwrap();
        zone = zone.txt(
            k["dns_name"].as_str().unwrap(),
            k["dns_txt"].as_str().unwrap(),
        );
    }
    zone
}

/// The records of every author domain: DKIM key, SPF (`ip4:192.0.2.10 -all`)
/// and DMARC where it has one.
pub fn author_zone() -> Result<Zone, String> {
    let mut z = Zone::default();
    for a in authors()? {
        z = z
            .txt(
                &format!("{AUTHOR_SELECTOR}._domainkey.{}", a.domain),
                &a.dkim_txt,
            )
            .txt(&a.domain, &format!("v=spf1 ip4:{AUTHOR_MTA_IP} -all"));
        if let Some(p) = &a.dmarc {
            z = z.txt(&format!("_dmarc.{}", a.domain), p);
        }
    }
    Ok(z)
}

fn run(args: &[&str], input: &[u8]) -> Result<Vec<u8>, String> {
    let tool = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/dkimpy_tool.py");
    let mut child = Command::new(PYTHON)
        .arg(tool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("dkimpy: {e}"))?;
    child
        .stdin
        .take()
        .ok_or("no stdin")?
        .write_all(input)
        .map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "dkimpy {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(out.stdout)
}

/// `msg` with the DKIM-Signature the author's MTA adds (rsa-sha256,
/// relaxed/relaxed, selector `sel1`, dkimpy's default header list).
pub fn sign(msg: &[u8], author: &AuthorDomain) -> Vec<u8> {
    sign_headers(msg, author, &[])
}

/// As [`sign`], signing exactly `headers` (empty: dkimpy's default list).
pub fn sign_headers(msg: &[u8], author: &AuthorDomain, headers: &[&str]) -> Vec<u8> {
    let key = author.key_file.to_string_lossy().to_string();
    let mut args = vec![
        "sign",
        author.domain.as_str(),
        AUTHOR_SELECTOR,
        key.as_str(),
        "rsa-sha256",
    ];
    args.extend_from_slice(headers);
    run(&args, msg).expect("dkimpy sign")
}

/// `msg` with a new ARC set sealed by `author`'s domain and key, as a
/// forwarder with authserv-id `srv_id` would add it (its
/// `Authentication-Results: srv_id; …` header must be in `msg`).
pub fn arc_sign(msg: &[u8], author: &AuthorDomain, srv_id: &str) -> Vec<u8> {
    let key = author.key_file.to_string_lossy().to_string();
    run(
        &[
            "arcsign",
            author.domain.as_str(),
            AUTHOR_SELECTOR,
            key.as_str(),
            srv_id,
        ],
        msg,
    )
    .expect("dkimpy arcsign")
}

/// dkimpy's verdict on one DKIM-Signature.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct SignatureVerdict {
    /// `d=` of the signature.
    pub d: String,
    /// `s=` of the signature.
    pub s: String,
    /// Whether it verifies.
    pub pass: bool,
    /// dkimpy's exception, if any.
    pub error: String,
}

/// dkimpy's verdict on the ARC chain.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ArcVerdict {
    /// `pass`, `fail`, `none` (or `error` when dkimpy raised).
    pub cv: String,
    /// dkimpy's reason.
    pub reason: String,
}

/// What a receiver running dkimpy concludes about a message.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Verdict {
    /// One per DKIM-Signature, top first.
    pub dkim: Vec<SignatureVerdict>,
    /// The ARC chain.
    pub arc: ArcVerdict,
}

impl Verdict {
    /// True when some signature with `d=domain` verifies.
    pub fn passes_for(&self, domain: &str) -> bool {
        self.dkim
            .iter()
            .any(|s| s.pass && s.d.eq_ignore_ascii_case(domain))
    }
}

/// Verifies every DKIM signature and the ARC chain of `msg`, with DNS at
/// `dns_addr` (`127.0.0.1:PORT`, the test server).
pub fn verify(msg: &[u8], dns_addr: &str) -> Verdict {
    let out = run(&["verify", dns_addr], msg).expect("dkimpy verify");
    serde_json::from_slice(&out)
        .unwrap_or_else(|e| panic!("dkimpy output {e}: {}", String::from_utf8_lossy(&out)))
}
