//! RFC 8058 one-click unsubscribe links. The token names the list and the
//! member in hex and carries the site signer's signature (purpose
//! `Unsubscribe`, 128 bits) of list and member: `LISTHEX.MEMBERHEX.SIG`. It
//! does not expire (a link in an old post must keep working) and is checked
//! in constant time.

use crate::secret::{self, Purpose, Secret};

fn signature(secret: &Secret, list: &str, member: &str) -> String {
    secret::sign(secret, Purpose::Unsubscribe, &[list, member])
}

/// The token for a member (lowercased key) of a list (key).
pub fn encode(secret: &Secret, list: &str, member: &str) -> String {
    format!(
        "{}.{}.{}",
        hex::encode(list),
        hex::encode(member),
        signature(secret, list, member)
    )
}

/// The list and member a token names, if its signature holds.
pub fn decode(secret: &Secret, token: &str) -> Option<(String, String)> {
    let mut parts = token.split('.');
    let (l, m, sig) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let list = String::from_utf8(hex::decode(l).ok()?).ok()?;
    let member = String::from_utf8(hex::decode(m).ok()?).ok()?;
    let fields = [list.as_str(), member.as_str()];
    // Links minted before the one framing: see secret's module doc.
    (secret::verify(secret, Purpose::Unsubscribe, &fields, sig)
        || secret::verify_legacy(secret, Purpose::Unsubscribe, &fields, sig))
    .then_some((list, member))
}

/// The one-click URL under `base_url`.
pub fn url(base_url: &str, token: &str) -> String {
    format!("{}/unsubscribe/{token}", base_url.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_and_forgeries_do_not() {
        let s = Secret::from_bytes(b"0123456789abcdef0123456789abcdef".to_vec());
        let t = encode(&s, "dev@l.org", "bob@x.org");
        assert_eq!(
            decode(&s, &t),
            Some(("dev@l.org".into(), "bob@x.org".into()))
        );
        let other = encode(&s, "dev@l.org", "eve@x.org");
        let forged = format!(
            "{}.{}",
            t.rsplit_once('.')
                .unwrap()
                .0
                .replace(&hex::encode("bob@x.org"), &hex::encode("eve@x.org")),
            t.rsplit('.').next().unwrap()
        );
        assert_ne!(forged, other);
        assert_eq!(decode(&s, &forged), None);
        let k2 = Secret::from_bytes(b"another secret, thirty-two bytes".to_vec());
        assert_eq!(decode(&k2, &t), None);
        for bad in ["", "a.b", "zz.zz.zz", &format!("{t}.x")] {
            assert_eq!(decode(&s, bad), None, "{bad}");
        }
        assert_eq!(url("https://l.org/", "T"), "https://l.org/unsubscribe/T");
    }
}
