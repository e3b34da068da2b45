//! Sender authentication and signing (issue 10), all through the `mail-auth`
//! crate (Stalwart's DKIM/ARC/SPF/DMARC library, the user's choice): no
//! DKIM, ARC, SPF or DMARC cryptography or record parsing lives here.
//!
//! * [`keydir`]: the key files `DATA_DIR/dkim/DOMAIN/SELECTOR.json` and the
//!   server's [`keydir::KeyRing`] (reloaded when they change).
//! * [`resolver`]: one site resolver ([`DnsConfig`], `[dns]` in the config
//!   file) over mail-auth's hickory-based `MessageAuthenticator`.
//! * [`keys`]: DKIM key generation (RSA-2048, Ed25519), the serialisable
//!   key record and the TXT record to publish.
//! * [`sign`]: DKIM signing of copies. The body hash is computed once per
//!   post and each envelope's header set costs one signature (see
//!   [`sign::PostSigner`] for how mail-auth's public pieces allow it).
//! * [`arc`]: ARC sealing of the copy as sent, from the stored results of
//!   [`evaluate`] (no DNS at sealing time).
//! * [`evaluate`]: the sender checks once per post (every DKIM signature,
//!   the ARC chain, SPF, DMARC of the From domain with the organisational
//!   domain's policy), or the upstream MTA's Authentication-Results when
//!   its authserv-id is trusted; and the `breaks` test for mitigation.
//!
//! **Temporary versus permanent.** Every result that can come from DNS has
//! [`AuthResult::TempError`] apart from the permanent outcomes: a DNS timeout
//! or SERVFAIL never turns into `fail`. [`evaluate::Evaluation::is_temporary`]
//! says when a decision must wait (the post is retried later).

pub mod arc;
pub mod evaluate;
pub mod keydir;
pub mod keys;
pub mod resolver;
pub mod sign;
pub mod site;

pub use evaluate::{Evaluation, Evaluator, SmtpContext};
pub use keys::{Algorithm, DkimKeyRecord};
pub use resolver::{DnsConfig, Resolver};
pub use sign::PostSigner;

use serde::{Deserialize, Serialize};

/// The outcome of one authentication method, with RFC 8601's names (as
/// they appear in Authentication-Results).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthResult {
    /// Verified.
    Pass,
    /// Checked and failed: a permanent outcome.
    Fail,
    /// SPF `~all`: a weak fail.
    SoftFail,
    /// Checked, no conclusion (e.g. a DKIM body hash mismatch, SPF `?all`).
    Neutral,
    /// Nothing to check (no signature, no record).
    None,
    /// DNS did not answer: try again later. Never a reason to reject.
    TempError,
    /// A broken record or header: permanent, but not a forgery proof.
    PermError,
}

impl AuthResult {
    /// True when the outcome depends on DNS that did not answer.
    pub fn is_temporary(self) -> bool {
        self == AuthResult::TempError
    }

    /// The RFC 8601 keyword (`pass`, `temperror`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            AuthResult::Pass => "pass",
            AuthResult::Fail => "fail",
            AuthResult::SoftFail => "softfail",
            AuthResult::Neutral => "neutral",
            AuthResult::None => "none",
            AuthResult::TempError => "temperror",
            AuthResult::PermError => "permerror",
        }
    }

    /// Reads an RFC 8601 keyword; unknown words count as `permerror`.
    pub fn parse(word: &str) -> AuthResult {
        match word.to_ascii_lowercase().as_str() {
            "pass" => AuthResult::Pass,
            "fail" | "hardfail" => AuthResult::Fail,
            "softfail" => AuthResult::SoftFail,
            "neutral" | "policy" => AuthResult::Neutral,
            "none" => AuthResult::None,
            "temperror" => AuthResult::TempError,
            _ => AuthResult::PermError,
        }
    }
}

impl std::fmt::Display for AuthResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// mail-auth's DNS errors split into temporary and permanent: only a
/// resolver failure (timeout, SERVFAIL, refused, no server) is temporary;
/// NXDOMAIN / no record is a permanent "none".
pub(crate) fn is_dns_temporary(err: &mail_auth::Error) -> bool {
    use mail_auth::hickory_resolver::proto::op::ResponseCode;
    match err {
        mail_auth::Error::Dns(mail_auth::DnsError::Resolver(_)) => true,
        mail_auth::Error::Dns(mail_auth::DnsError::RecordNotFound(code)) => {
            !matches!(*code, ResponseCode::NXDomain | ResponseCode::NoError)
        }
        _ => false,
    }
}
