//! LMTP replies: a code, an enhanced status code (RFC 3463) and a text.

use std::fmt;

use crate::intake::{Outcome, RcptRefusal};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub status: &'static str,
    pub text: String,
}

pub fn reply(code: u16, status: &'static str, text: impl Into<String>) -> Reply {
    Reply {
        code,
        status,
        text: text.into(),
    }
}

impl Reply {
    /// The wire form, one line with CRLF; control characters in the text are
    /// replaced so a reply can never be split or forged by what it quotes.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let text: String = self
            .text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let line = if self.status.is_empty() {
            format!("{} {}\r\n", self.code, text)
        } else {
            format!("{} {} {}\r\n", self.code, self.status, text)
        };
        out.extend_from_slice(line.as_bytes());
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.code, self.status, self.text)
    }
}

/// The reply at RCPT time for a refused recipient.
pub fn refusal(r: &RcptRefusal) -> Reply {
    match r {
        RcptRefusal::BadAddress(e) => reply(501, "5.1.3", format!("bad recipient address: {e}")),
        RcptRefusal::UnknownDomain(d) => reply(550, "5.1.1", format!("no mailing lists at {d}")),
        RcptRefusal::UnknownAddress(a) => reply(550, "5.1.1", format!("{a}: no such list address")),
        RcptRefusal::Unavailable(e) => reply(451, "4.3.0", format!("list data unavailable: {e}")),
    }
}

/// The reply after DATA for one recipient.
pub fn outcome(o: &Outcome) -> Reply {
    match o {
        Outcome::Stored { id } => reply(250, "2.0.0", format!("queued as {id}")),
        Outcome::Redelivery { existing } => {
            reply(250, "2.0.0", format!("already queued as {existing}"))
        }
        Outcome::DuplicateDiscarded { existing, .. } => {
            reply(250, "2.0.0", format!("duplicate of {existing} discarded"))
        }
        Outcome::DuplicateRejected { message_id, .. } => reply(
            550,
            "5.7.0",
            format!("Message-ID <{message_id}> was already posted to this list"),
        ),
        Outcome::Probe => reply(250, "2.0.0", "MTA check probe received, not stored"),
        Outcome::Loop => reply(
            550,
            "5.4.6",
            "mail loop: this message already went through this list",
        ),
        Outcome::TempFail {
            disk_full: true, ..
        } => reply(452, "4.3.1", "insufficient storage, try again later"),
        Outcome::TempFail { .. } => {
            reply(451, "4.3.0", "temporary storage failure, try again later")
        }
    }
}
