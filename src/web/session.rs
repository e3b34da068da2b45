//! The pages' signed values: the session cookie, the CSRF token tied to it,
//! the single-use login link and the member's options link. Everything is
//! signed by the one site signer (`secret::sign`), checked in constant time
//! (`secret::verify`), and nothing here is kept in memory: a session works
//! on every host of a PostgreSQL site and survives a restart.
//!
//! Each value signs a label first (`web-session`, `web-csrf`, `web-login`,
//! `web-options`) and then its fields, under the pages' own purpose
//! (`Purpose::Web`, 128-bit signatures), so no signature made for another
//! use (a one-click link, a VERP tag) can pass here.
//!
//! * **Session cookie** `lr_session`: `ADDRESS64.EXPIRES.NONCE.SIG`. The
//!   address is empty for a visitor who has not logged in (the anonymous
//!   forms need a CSRF token too); the nonce is 128 bits from the OS CSPRNG,
//!   new at each login (no session fixation).
//! * **CSRF token**: the signature of the session's nonce; every form
//!   carries it and every POST checks it.
//! * **Login link** `/login/TOKEN`: 128 random bits and their signature; the
//!   store keeps its SHA-256 as a `PendingAction::Login` (single use through
//!   `take_pending`, 15 minutes).
//! * **Options link** `/options/TOKEN`: `LIST64.ADDRESS64.EXPIRES.SIG`, valid
//!   until it expires (a member may open it several times).

use base64::Engine;
use rand::RngCore;

use crate::secret::{self, base32, Purpose, Secret};

/// The pages' own purpose (128-bit signatures, long enough for a cookie or
/// a URL): nothing signed for another use can pass here; the labels keep
/// the pages' uses apart (see the module doc).
const PURPOSE: Purpose = Purpose::Web;

/// The session cookie's name.
pub const COOKIE: &str = "lr_session";

/// How long a login lasts, in seconds (then the person asks for a new link).
pub const LOGIN_SECS: u64 = 8 * 3600;

/// How long a visitor's session (for the anonymous forms' CSRF) lasts.
pub const VISITOR_SECS: u64 = 24 * 3600;

/// How long a login link works, in seconds.
pub const LINK_SECS: u64 = 15 * 60;

fn b64(s: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

fn unb64(s: &str) -> Option<String> {
    if s.len() > 1024 {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// 128 bits from the OS CSPRNG, in base32.
fn nonce() -> String {
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    base32(&b)
}

/// A checked session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The logged-in address (lowercased key); `None` for a visitor.
    pub address: Option<String>,
    /// Seconds since the epoch after which the cookie is refused.
    pub expires: u64,
    /// The random part, which the CSRF token signs.
    pub nonce: String,
}

impl Session {
    /// A new session for `address` (or a visitor), from `now`.
    pub fn new(address: Option<String>, now: u64) -> Session {
        let secs = if address.is_some() {
            LOGIN_SECS
        } else {
            VISITOR_SECS
        };
        Session {
            address,
            expires: now + secs,
            nonce: nonce(),
        }
    }

    /// The cookie value.
    pub fn encode(&self, secret: &Secret) -> String {
        let address = self.address.as_deref().unwrap_or("");
        let expires = self.expires.to_string();
        let sig = secret::sign(
            secret,
            PURPOSE,
            &["web-session", address, &expires, &self.nonce],
        );
        format!("{}.{expires}.{}.{sig}", b64(address), self.nonce)
    }

    /// The session a cookie value holds, if its signature verifies and it
    /// has not expired.
    pub fn decode(secret: &Secret, value: &str, now: u64) -> Option<Session> {
        let mut parts = value.split('.');
        let (a, e, n, sig) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let address = unb64(a)?;
        let fields = ["web-session", address.as_str(), e, n];
        if !secret::verify(secret, PURPOSE, &fields, sig) {
            return None;
        }
        let expires: u64 = e.parse().ok()?;
        if expires <= now {
            return None;
        }
        Some(Session {
            address: (!address.is_empty()).then_some(address),
            expires,
            nonce: n.to_string(),
        })
    }

    /// The CSRF token of this session: forms carry it, POSTs check it.
    pub fn csrf(&self, secret: &Secret) -> String {
        secret::sign(secret, PURPOSE, &["web-csrf", &self.nonce, "form"])
    }

    /// Whether `token` is this session's CSRF token (constant time).
    pub fn csrf_ok(&self, secret: &Secret, token: &str) -> bool {
        secret::verify(secret, PURPOSE, &["web-csrf", &self.nonce, "form"], token)
    }
}

/// The `Set-Cookie` value for a session: `HttpOnly`, `SameSite=Strict`,
/// on the listener's path, `Secure` when the site is reached over https.
pub fn set_cookie(value: &str, path: &str, secure: bool, max_age: u64) -> String {
    format!(
        "{COOKIE}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The session cookie's value in a `Cookie` header, if present.
pub fn cookie_value(header: &str) -> Option<&str> {
    header
        .split(';')
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)
}

/// A new login link token: random bits and their signature.
pub fn login_token(secret: &Secret) -> String {
    let n = nonce();
    let sig = secret::sign(secret, PURPOSE, &["web-login", &n, "link"]);
    format!("{n}{sig}")
}

/// Whether a login token carries a valid signature (checked before the
/// store is touched: a forged link never reaches it).
pub fn login_token_ok(secret: &Secret, token: &str) -> bool {
    let n_len = nonce().len();
    if token.len() <= n_len || !token.is_ascii() {
        return false;
    }
    let (n, sig) = token.split_at(n_len);
    secret::verify(secret, PURPOSE, &["web-login", n, "link"], sig)
}

/// A member's options link token, valid until `expires`.
pub fn options_token(secret: &Secret, list: &str, address: &str, expires: u64) -> String {
    let e = expires.to_string();
    let sig = secret::sign(secret, PURPOSE, &["web-options", list, address, &e]);
    format!("{}.{}.{e}.{sig}", b64(list), b64(address))
}

/// The list and member an options token names, if it verifies and has not
/// expired.
pub fn options_check(secret: &Secret, token: &str, now: u64) -> Option<(String, String)> {
    let mut parts = token.split('.');
    let (l, a, e, sig) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let (list, address) = (unb64(l)?, unb64(a)?);
    if !secret::verify(secret, PURPOSE, &["web-options", &list, &address, e], sig) {
        return None;
    }
    (e.parse::<u64>().ok()? > now).then_some((list, address))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> Secret {
        Secret::from_bytes(b"0123456789abcdef0123456789abcdef".to_vec())
    }

    #[test]
    fn sessions_verify_expire_and_refuse_forgeries() {
        let s = secret();
        let sess = Session::new(Some("mod@x.org".into()), 1000);
        let v = sess.encode(&s);
        assert_eq!(Session::decode(&s, &v, 1001), Some(sess.clone()));
        assert_eq!(Session::decode(&s, &v, 1000 + LOGIN_SECS), None);
        // Another address under the same signature.
        let forged = v.replacen(&b64("mod@x.org"), &b64("own@x.org"), 1);
        assert_eq!(Session::decode(&s, &forged, 1001), None);
        let k2 = Secret::from_bytes(b"another secret, thirty-two bytes".to_vec());
        assert_eq!(Session::decode(&k2, &v, 1001), None);
        for bad in ["", "a.b.c", "...", &format!("{v}.x")] {
            assert_eq!(Session::decode(&s, bad, 0), None, "{bad}");
        }
        let visitor = Session::new(None, 5);
        let back = Session::decode(&s, &visitor.encode(&s), 6).unwrap();
        assert_eq!(back.address, None);
    }

    #[test]
    fn csrf_is_tied_to_the_session() {
        let s = secret();
        let a = Session::new(None, 0);
        let b = Session::new(None, 0);
        assert!(a.csrf_ok(&s, &a.csrf(&s)));
        assert!(!b.csrf_ok(&s, &a.csrf(&s)));
        assert!(!a.csrf_ok(&s, ""));
    }

    #[test]
    fn login_and_options_tokens() {
        let s = secret();
        let t = login_token(&s);
        assert!(login_token_ok(&s, &t));
        assert_ne!(t, login_token(&s));
        let mut forged = t.clone().into_bytes();
        forged[0] = if forged[0] == b'a' { b'b' } else { b'a' };
        assert!(!login_token_ok(&s, &String::from_utf8(forged).unwrap()));
        assert!(!login_token_ok(&s, "short"));
        let o = options_token(&s, "dev@l.org", "bob@x.org", 100);
        assert_eq!(
            options_check(&s, &o, 99),
            Some(("dev@l.org".into(), "bob@x.org".into()))
        );
        assert_eq!(options_check(&s, &o, 100), None);
        let other = o.replacen(&b64("bob@x.org"), &b64("eve@x.org"), 1);
        assert_eq!(options_check(&s, &other, 99), None);
    }

    #[test]
    fn cookies() {
        assert_eq!(cookie_value("a=1; lr_session=XYZ; b=2"), Some("XYZ"));
        assert_eq!(cookie_value("a=1"), None);
        let c = set_cookie("v", "/lists/", true, 60);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.ends_with("Secure"));
        assert!(!set_cookie("v", "/", false, 60).contains("Secure"));
    }
}
