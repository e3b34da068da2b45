//! Sender evaluation, once per post before the posting policy: every
//! DKIM signature, the ARC chain, SPF (client address, HELO and MAIL FROM,
//! from XFORWARD) and DMARC of the From domain (mail-auth's DNS tree walk
//! finds the organisational domain's policy). The result, [`Evaluation`], is
//! serialisable: it is kept with the post, shown by `held show`, and feeds
//! ARC sealing at fan-out time.
//!
//! Where the MTA already checks (OpenDKIM/OpenDMARC, Exim), a configured
//! `trust_authserv_id` makes [`Evaluator::evaluate`] read that MTA's
//! `Authentication-Results` instead of checking again.
//!
//! [`Evaluator::would_pass_dmarc`] is the `breaks` test of DMARC mitigation:
//! does the copy as we would send it still carry a valid DKIM signature
//! aligned with its From (the only way it can pass DMARC at a receiver,
//! since SPF there checks our envelope)?

use super::resolver::Resolver;
use super::{is_dns_temporary, AuthResult};
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    AuthenticatedMessage, AuthenticationResults, DkimResult, DmarcResult, Parameters, SpfOutput,
    SpfResult,
};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// What the MTA told us about the SMTP client (XFORWARD NAME/ADDR/HELO and
/// the envelope sender). SPF is only checked with a client address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SmtpContext {
    /// The client's address (XFORWARD ADDR); `None`: SPF is `none`.
    pub client_ip: Option<IpAddr>,
    /// The client's HELO name (XFORWARD HELO).
    pub helo: String,
    /// The envelope sender (MAIL FROM), empty for `<>`.
    pub mail_from: String,
}

/// One DKIM-Signature's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DkimCheck {
    /// `d=`: the signing domain.
    pub domain: String,
    /// `s=`: the selector.
    pub selector: String,
    /// The verification outcome.
    pub result: AuthResult,
    /// Why, when not `pass` (mail-auth's message).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// The incoming ARC chain's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArcCheck {
    /// `pass`, `fail`, `none` (no chain), `temperror`, …: what the seal's
    /// `cv=` is derived from.
    pub result: AuthResult,
    /// The number of ARC sets on the message.
    pub sets: u32,
    /// Why, when not `pass`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// SPF of the envelope sender (or of HELO when MAIL FROM is `<>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpfCheck {
    /// The outcome.
    pub result: AuthResult,
    /// The domain checked.
    pub domain: String,
}

/// The policy a domain publishes in DMARC (`p=`, or `sp=` for a subdomain).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DmarcPolicy {
    /// `p=none`: monitoring only.
    None,
    /// `p=quarantine`: receivers junk failing mail.
    Quarantine,
    /// `p=reject`: receivers refuse failing mail.
    Reject,
}

/// DMARC of the From domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DmarcCheck {
    /// The From domain (RFC 5322.From).
    pub from_domain: String,
    /// `pass` (aligned DKIM or SPF), `fail`, `none` (no record),
    /// `temperror` (DNS did not answer), `permerror`.
    pub result: AuthResult,
    /// The policy that applies to the From domain (its own record, else the
    /// organisational domain's `sp=`); `None` when there is no record.
    pub policy: Option<DmarcPolicy>,
}

/// Where an [`Evaluation`] comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Source {
    /// listrelay checked (mail-auth with the site resolver).
    Checked,
    /// Read from the Authentication-Results of the trusted MTA.
    Trusted {
        /// That MTA's authserv-id.
        authserv_id: String,
    },
}

/// The sender checks of one post, kept with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Checked here or read from a trusted MTA.
    pub source: Source,
    /// Every DKIM-Signature, top first.
    pub dkim: Vec<DkimCheck>,
    /// The incoming ARC chain.
    pub arc: ArcCheck,
    /// SPF (`None` when no client address was known).
    pub spf: Option<SpfCheck>,
    /// DMARC of the From domain.
    pub dmarc: DmarcCheck,
    /// The Authentication-Results value (`authserv-id; dkim=pass …`) on one
    /// line: shown to moderators and used as ARC-Authentication-Results.
    pub auth_results: String,
}

impl Evaluation {
    /// True when a decision must wait: DNS did not answer for DMARC or a
    /// DKIM key, or for the ARC chain. Retry the post later.
    pub fn is_temporary(&self) -> bool {
        self.dmarc.result.is_temporary()
            || self.arc.result.is_temporary()
            || self.dkim.iter().any(|d| d.result.is_temporary())
    }

    /// The From domain publishes `p=quarantine` or `p=reject` (the
    /// `policy` mitigation trigger, as GNU Mailman decides).
    pub fn policy_enforced(&self) -> bool {
        matches!(
            self.dmarc.policy,
            Some(DmarcPolicy::Quarantine | DmarcPolicy::Reject)
        )
    }

    /// One line for people (`held show`, `queue --body`, the moderator's
    /// notice): the Authentication-Results text and the From domain's policy.
    pub fn summary(&self) -> String {
        let policy = match self.dmarc.policy {
            Some(DmarcPolicy::Reject) => "p=reject",
            Some(DmarcPolicy::Quarantine) => "p=quarantine",
            Some(DmarcPolicy::None) => "p=none",
            None => "no DMARC record",
        };
        let source = match &self.source {
            Source::Checked => String::new(),
            Source::Trusted { authserv_id } => format!(", as {authserv_id} reported"),
        };
        format!(
            "{} (From domain {}: {policy}{source})",
            self.auth_results, self.dmarc.from_domain
        )
    }

    /// The post fails DMARC and its domain asks receivers to act on it:
    /// what `auth_fail_action` applies to (a forged From).
    pub fn fails_enforced_dmarc(&self) -> bool {
        self.dmarc.result == AuthResult::Fail && self.policy_enforced()
    }
}

/// Whether the copy as we would send it passes DMARC through DKIM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Survival {
    /// An aligned DKIM signature still verifies: From can stay.
    Survives,
    /// None does (changed, or there was none).
    Broken,
    /// DNS did not answer: decide later.
    Temporary,
}

/// Runs the checks with the site resolver.
#[derive(Debug, Clone)]
pub struct Evaluator {
    resolver: Resolver,
    /// Our authserv-id in Authentication-Results (the host name).
    authserv_id: String,
    /// `auth.trust_authserv_id`: the MTA whose results we take instead.
    trust_authserv_id: Option<String>,
}

/// Header values longer than this are not read for trusted results (a
/// huge header is hostile; the checks then run here).
const MAX_TRUSTED_HEADER: usize = 16 * 1024;

fn dkim_result(r: &DkimResult) -> (AuthResult, String) {
    match r {
        DkimResult::Pass => (AuthResult::Pass, String::new()),
        DkimResult::Neutral(e) => (AuthResult::Neutral, e.to_string()),
        DkimResult::Fail(e) => (AuthResult::Fail, e.to_string()),
        DkimResult::PermError(e) if is_dns_temporary(e) => (AuthResult::TempError, e.to_string()),
        DkimResult::PermError(e) => (AuthResult::PermError, e.to_string()),
        DkimResult::TempError(e) => (AuthResult::TempError, e.to_string()),
        DkimResult::None => (AuthResult::None, String::new()),
    }
}

fn spf_result(r: SpfResult) -> AuthResult {
    match r {
        SpfResult::Pass => AuthResult::Pass,
        SpfResult::Fail => AuthResult::Fail,
        SpfResult::SoftFail => AuthResult::SoftFail,
        SpfResult::Neutral => AuthResult::Neutral,
        SpfResult::TempError => AuthResult::TempError,
        SpfResult::PermError => AuthResult::PermError,
        SpfResult::None => AuthResult::None,
    }
}

fn dmarc_result(r: &DmarcResult) -> AuthResult {
    match r {
        DmarcResult::Pass => AuthResult::Pass,
        DmarcResult::Fail(_) => AuthResult::Fail,
        DmarcResult::TempError(_) => AuthResult::TempError,
        DmarcResult::PermError(e) if is_dns_temporary(e) => AuthResult::TempError,
        DmarcResult::PermError(_) => AuthResult::PermError,
        DmarcResult::None => AuthResult::None,
    }
}

/// Folding and runs of white space to single spaces: the relaxed form.
fn one_line(s: &str) -> String {
    s.split_ascii_whitespace().collect::<Vec<_>>().join(" ")
}

fn from_domain(msg: &AuthenticatedMessage<'_>) -> String {
    msg.from
        .first()
        .and_then(|f| f.rsplit_once('@'))
        .map(|(_, d)| d.to_ascii_lowercase())
        .unwrap_or_default()
}

impl Evaluator {
    /// An evaluator writing `authserv_id` (our host name) in its results,
    /// and trusting the MTA with `trust_authserv_id` when set.
    pub fn new(
        resolver: Resolver,
        authserv_id: &str,
        trust_authserv_id: Option<&str>,
    ) -> Evaluator {
        Evaluator {
            resolver,
            authserv_id: authserv_id.to_string(),
            trust_authserv_id: trust_authserv_id
                .filter(|s| !s.trim().is_empty())
                .map(|s| s.trim().to_ascii_lowercase()),
        }
    }

    /// Evaluates a post as received (`raw`) from `smtp`. Never fails: a
    /// message mail-auth cannot read gives `permerror` throughout, a DNS
    /// failure `temperror` ([`Evaluation::is_temporary`]).
    pub async fn evaluate(&self, raw: &[u8], smtp: &SmtpContext) -> Evaluation {
        let Some(msg) = AuthenticatedMessage::parse(raw) else {
            return self.unreadable();
        };
        if let Some(trusted) = self.trusted_results(&msg) {
            return trusted;
        }
        let auth = self.resolver.authenticator();
        let dkim_out = auth.verify_dkim(Parameters::new(&msg)).await;
        let arc_out = auth.verify_arc(Parameters::new(&msg)).await;
        let mail_from_domain = smtp
            .mail_from
            .rsplit_once('@')
            .map(|(_, d)| d)
            .unwrap_or(smtp.helo.as_str());
        let spf_out = match smtp.client_ip {
            Some(ip) => {
                auth.verify_spf(Parameters::new(SpfParameters::verify(
                    ip,
                    &smtp.helo,
                    &self.authserv_id,
                    &smtp.mail_from,
                )))
                .await
            }
            None => SpfOutput::default(),
        };
        let dmarc_out = auth
            .verify_dmarc(Parameters::new(DmarcParameters::new(
                &msg,
                &dkim_out,
                mail_from_domain,
                &spf_out,
            )))
            .await;

        let from = from_domain(&msg);
        let mut ar = AuthenticationResults::new(&self.authserv_id)
            .with_dkim_results(&dkim_out, &from)
            .with_dmarc_result(&dmarc_out);
        if let Some(ip) = smtp.client_ip {
            ar = ar
                .with_spf_mailfrom_result(&spf_out, ip, &smtp.mail_from, &smtp.helo)
                .with_arc_result(&arc_out, ip);
        }
        let mut dkim: Vec<DkimCheck> = dkim_out
            .iter()
            .map(|o| {
                let (result, reason) = dkim_result(o.result());
                DkimCheck {
                    domain: o.signature().map(|s| s.d.clone()).unwrap_or_default(),
                    selector: o.signature().map(|s| s.s.clone()).unwrap_or_default(),
                    result,
                    reason,
                }
            })
            .collect();
        // mail-auth reports DKIM-specific parse errors itself; a signature it
        // could not read at all (bad tag list, base64) would vanish.
        dkim.extend(
            msg.errors
                .iter()
                .filter(|h| {
                    h.name.eq_ignore_ascii_case(b"DKIM-Signature")
                        && !matches!(h.header, mail_auth::Error::Dkim(_))
                })
                .map(|h| DkimCheck {
                    domain: String::new(),
                    selector: String::new(),
                    result: AuthResult::PermError,
                    reason: format!("unreadable DKIM-Signature: {}", h.header),
                }),
        );
        let (mut arc_result, mut arc_reason) = dkim_result(arc_out.result());
        if arc_result == AuthResult::None
            && !(msg.as_headers.is_empty() && msg.aar_headers.is_empty())
        {
            // mail-auth ignores ARC-Seal / ARC-Authentication-Results without
            // an ARC-Message-Signature; that is a broken chain, not none.
            arc_result = AuthResult::Fail;
            arc_reason = "ARC headers without an ARC-Message-Signature (broken chain)".into();
        }
        let policy = dmarc_out.dmarc_record().map(|_| match dmarc_out.policy() {
            mail_auth::dmarc::Policy::Reject => DmarcPolicy::Reject,
            mail_auth::dmarc::Policy::Quarantine => DmarcPolicy::Quarantine,
            _ => DmarcPolicy::None,
        });
        let dmarc_res = dmarc_result(&dmarc_out.result());
        Evaluation {
            source: Source::Checked,
            dkim,
            arc: ArcCheck {
                result: arc_result,
                sets: arc_out.sets().len() as u32,
                reason: arc_reason,
            },
            spf: smtp.client_ip.map(|_| SpfCheck {
                result: spf_result(spf_out.result()),
                domain: spf_out.domain().to_string(),
            }),
            dmarc: DmarcCheck {
                from_domain: if from.is_empty() {
                    dmarc_out.domain().to_string()
                } else {
                    from
                },
                // A DNS failure during the tree walk leaves no policy known.
                policy: if dmarc_res.is_temporary() {
                    None
                } else {
                    policy
                },
                result: dmarc_res,
            },
            auth_results: one_line(&ar.to_string()),
        }
    }

    fn unreadable(&self) -> Evaluation {
        Evaluation {
            source: Source::Checked,
            dkim: Vec::new(),
            arc: ArcCheck {
                result: AuthResult::None,
                sets: 0,
                reason: String::new(),
            },
            spf: None,
            dmarc: DmarcCheck {
                from_domain: String::new(),
                result: AuthResult::PermError,
                policy: None,
            },
            auth_results: format!(
                "{}; dmarc=permerror (no readable header block)",
                self.authserv_id
            ),
        }
    }

    /// The `breaks` test: would `copy` (the message as we would send it,
    /// before our own signature) pass DMARC at a receiver through an
    /// aligned author signature? Verified with mail-auth; keys come from
    /// the resolver's cache after [`Self::evaluate`].
    pub async fn would_pass_dmarc(&self, copy: &[u8]) -> Survival {
        let Some(msg) = AuthenticatedMessage::parse(copy) else {
            return Survival::Broken;
        };
        let auth = self.resolver.authenticator();
        let dkim_out = auth.verify_dkim(Parameters::new(&msg)).await;
        // SPF at the receiver checks our envelope, never aligned with the
        // author's From: only DKIM counts.
        let spf = SpfOutput::default();
        let dmarc = auth
            .verify_dmarc(Parameters::new(DmarcParameters::new(
                &msg, &dkim_out, "", &spf,
            )))
            .await;
        match dmarc_result(dmarc.dkim_result()) {
            AuthResult::Pass => Survival::Survives,
            AuthResult::TempError => Survival::Temporary,
            _ => Survival::Broken,
        }
    }

    /// The topmost Authentication-Results of the trusted MTA, read into an
    /// [`Evaluation`]; `None` when not configured or absent.
    fn trusted_results(&self, msg: &AuthenticatedMessage<'_>) -> Option<Evaluation> {
        let trusted = self.trust_authserv_id.as_deref()?;
        let value = msg.headers.iter().find_map(|(name, value)| {
            if !name.eq_ignore_ascii_case(b"Authentication-Results")
                || value.len() > MAX_TRUSTED_HEADER
            {
                return None;
            }
            let v = String::from_utf8_lossy(value);
            let results = authres::parse(&v)?;
            (results.authserv_id == trusted).then_some((one_line(&v), results))
        })?;
        let (line, results) = value;
        let mut e = Evaluation {
            source: Source::Trusted {
                authserv_id: trusted.to_string(),
            },
            dkim: Vec::new(),
            arc: ArcCheck {
                result: AuthResult::None,
                sets: msg.as_headers.len() as u32,
                reason: String::new(),
            },
            spf: None,
            dmarc: DmarcCheck {
                from_domain: from_domain(msg),
                result: AuthResult::None,
                policy: None,
            },
            auth_results: line,
        };
        for r in results.results {
            let prop = |k: &str| {
                r.props
                    .iter()
                    .find(|(pk, _)| pk.eq_ignore_ascii_case(k))
                    .map(|(_, v)| v.clone())
            };
            match r.method.as_str() {
                "dkim" => e.dkim.push(DkimCheck {
                    domain: prop("header.d")
                        .or_else(|| {
                            prop("header.i").map(|i| i.rsplit('@').next().unwrap_or("").to_string())
                        })
                        .unwrap_or_default(),
                    selector: prop("header.s").unwrap_or_default(),
                    result: r.result,
                    reason: String::new(),
                }),
                "spf" => {
                    e.spf = Some(SpfCheck {
                        result: r.result,
                        domain: prop("smtp.mailfrom")
                            .or_else(|| prop("smtp.helo"))
                            .map(|d| d.rsplit('@').next().unwrap_or("").to_string())
                            .unwrap_or_default(),
                    })
                }
                "arc" => e.arc.result = r.result,
                "dmarc" => {
                    e.dmarc.result = r.result;
                    if let Some(d) = prop("header.from") {
                        e.dmarc.from_domain = d.to_ascii_lowercase();
                    }
                    e.dmarc.policy =
                        prop("policy.dmarc").or_else(|| prop("p")).and_then(|p| {
                            match p.to_ascii_lowercase().as_str() {
                                "reject" => Some(DmarcPolicy::Reject),
                                "quarantine" => Some(DmarcPolicy::Quarantine),
                                "none" => Some(DmarcPolicy::None),
                                _ => None,
                            }
                        });
                }
                _ => {}
            }
        }
        Some(e)
    }
}

/// A reader for Authentication-Results (RFC 8601) as far as trusting an
/// upstream MTA needs: authserv-id, then `method=result` with `ptype.prop=
/// value` properties. mail-auth writes these headers but does not read
/// them. Comments are dropped, except that a `p=`/`dis=` inside one (as
/// OpenDMARC writes `dmarc=fail (p=reject dis=none)`) counts as a property.
pub mod authres {
    use super::AuthResult;

    /// One `method=result …` of the header.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct MethodResult {
        /// `dkim`, `spf`, `dmarc`, `arc`, … (lowercase).
        pub method: String,
        /// The result keyword.
        pub result: AuthResult,
        /// `(ptype.property, value)` pairs, and `p`/`dis` from comments.
        pub props: Vec<(String, String)>,
    }

    /// A parsed header value.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Results {
        /// Who checked (lowercase).
        pub authserv_id: String,
        /// What it found.
        pub results: Vec<MethodResult>,
    }

    /// Splits the value into the text outside comments and the comments'
    /// contents. Unbalanced parentheses: `None`.
    fn strip_comments(v: &str) -> Option<(String, Vec<String>)> {
        let mut out = String::with_capacity(v.len());
        let mut comments = Vec::new();
        let mut depth = 0usize;
        let mut current = String::new();
        let mut quoted = false;
        let mut escaped = false;
        for c in v.chars() {
            if escaped {
                escaped = false;
                if depth > 0 {
                    current.push(c)
                } else {
                    out.push(c)
                }
                continue;
            }
            match c {
                '\\' => escaped = true,
                '"' if depth == 0 => {
                    quoted = !quoted;
                    out.push(c);
                }
                '(' if !quoted => {
                    depth += 1;
                    out.push(' ');
                }
                ')' if !quoted => {
                    depth = depth.checked_sub(1)?;
                    if depth == 0 {
                        comments.push(std::mem::take(&mut current));
                    }
                }
                _ if depth > 0 => current.push(c),
                _ => out.push(c),
            }
        }
        (depth == 0 && !quoted).then_some((out, comments))
    }

    /// Parses one header value; `None` when it is not an
    /// Authentication-Results value (no authserv-id, unbalanced comments).
    pub fn parse(value: &str) -> Option<Results> {
        let mut results = Vec::new();
        let mut parts = value.split(';');
        let head = parts.next()?;
        let (head, _) = strip_comments(head)?;
        let authserv_id = head.split_ascii_whitespace().next()?.to_ascii_lowercase();
        if authserv_id.contains('=') {
            return None;
        }
        for part in parts {
            let (text, comments) = strip_comments(part)?;
            let mut words = text.split_ascii_whitespace();
            let Some(first) = words.next() else { continue };
            let Some((method, result)) = first.split_once('=') else {
                continue;
            };
            if method.eq_ignore_ascii_case("none") {
                continue;
            }
            let mut props: Vec<(String, String)> = words
                .filter_map(|w| w.split_once('='))
                .map(|(k, v)| (k.to_ascii_lowercase(), v.trim_matches('"').to_string()))
                .collect();
            for c in &comments {
                props.extend(
                    c.split_ascii_whitespace()
                        .filter_map(|w| w.split_once('='))
                        .filter(|(k, _)| matches!(k.to_ascii_lowercase().as_str(), "p" | "dis"))
                        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string())),
                );
            }
            results.push(MethodResult {
                method: method.trim().to_ascii_lowercase(),
                result: AuthResult::parse(result.trim()),
                props,
            });
        }
        Some(Results {
            authserv_id,
            results,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::authres::parse;
    use super::*;

    #[test]
    fn authentication_results_reader() {
        let r = parse(
            "mx.example.org 1; dkim=pass (2048-bit key) header.d=reject.test header.s=sel1;\r\n\
             \tspf=fail smtp.mailfrom=bob@x.test; dmarc=fail (p=reject dis=none) header.from=reject.test",
        )
        .unwrap();
        assert_eq!(r.authserv_id, "mx.example.org");
        assert_eq!(r.results.len(), 3);
        assert_eq!(r.results[0].result, AuthResult::Pass);
        assert!(r.results[2]
            .props
            .contains(&("p".to_string(), "reject".to_string())));
        // hostile values: a clear None or permerror, never a panic
        assert!(parse("").is_none());
        assert!(parse("a=b; dkim=pass").is_none());
        assert!(parse("mx; dkim=pass (unbalanced").is_none());
        assert!(parse("mx; dkim=pass )(").is_none());
        let r = parse("mx; dkim=\u{1F600}; =; ;;; spf").unwrap();
        assert_eq!(r.results[0].result, AuthResult::PermError);
        let huge = format!("mx; {}", "dkim=pass header.d=x; ".repeat(20_000));
        assert_eq!(parse(&huge).unwrap().results.len(), 20_000);
    }

    #[test]
    fn evaluation_serialises_and_judges() {
        let e = Evaluation {
            source: Source::Checked,
            dkim: vec![],
            arc: ArcCheck {
                result: AuthResult::None,
                sets: 0,
                reason: String::new(),
            },
            spf: None,
            dmarc: DmarcCheck {
                from_domain: "reject.test".into(),
                result: AuthResult::Fail,
                policy: Some(DmarcPolicy::Reject),
            },
            auth_results: "h; dmarc=fail".into(),
        };
        assert!(e.fails_enforced_dmarc() && !e.is_temporary());
        let json = serde_json::to_string(&e).unwrap();
        assert!(json.contains("\"policy\":\"reject\""), "{json}");
        assert_eq!(serde_json::from_str::<Evaluation>(&json).unwrap(), e);
    }
}
