//! mail-parser's full MIME parse, guarded. On some malformed multiparts
//! mail-parser 0.11.9 panics ("Invalid part ID, could not find multipart",
//! `parsers/message.rs:485`; found by fuzzing the bounce parser), and anyone
//! can send such a message as a post, a request or a bounce. Every full
//! parse of mail from outside goes through [`parse`], which reads that panic
//! as mail-parser's own `None`: a message it cannot read.

use mail_parser::{Message, MessageParser};
use tracing::warn;

/// The parsed message, or `None` when mail-parser cannot read it (or
/// panicked trying: logged and counted, `listrelay_mime_parser_panics_total`).
pub fn parse(raw: &[u8]) -> Option<Message<'_>> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        MessageParser::default().parse(raw)
    })) {
        Ok(parsed) => parsed,
        Err(_) => {
            metrics::counter!("listrelay_mime_parser_panics_total").increment(1);
            warn!(
                size = raw.len(),
                "mail-parser panicked on a message; it is treated as unreadable"
            );
            None
        }
    }
}
