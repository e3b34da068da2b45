//! One mail transaction (MAIL, RCPT..., DATA, message) on an open connection.

use std::time::Duration;

use super::connection::Connection;
use super::dotstuff::{DotStuffer, Stuffed};
use super::{Envelope, RcptStatus, Reply, SendError, TxnOutcome};

/// Input is stuffed and written in pieces of this size; the output buffer
/// stays below about twice this.
const CHUNK: usize = 64 * 1024;

/// Checks the envelope before anything is sent.
pub(crate) fn validate(env: &Envelope) -> Result<(), SendError> {
    if env.rcpts.is_empty() {
        return Err(SendError::InvalidEnvelope("no recipients".into()));
    }
    let bad = |a: &str| a.bytes().any(|b| matches!(b, b'\r' | b'\n' | b'<' | b'>'));
    if bad(&env.mail_from) {
        return Err(SendError::InvalidEnvelope(format!(
            "invalid sender {:?}",
            env.mail_from
        )));
    }
    for r in &env.rcpts {
        if r.is_empty() || bad(r) {
            return Err(SendError::InvalidEnvelope(format!(
                "invalid recipient {r:?}"
            )));
        }
    }
    Ok(())
}

fn mail_command(conn: &Connection, env: &Envelope, size: usize) -> String {
    let mut cmd = format!("MAIL FROM:<{}>", env.mail_from);
    if conn.caps.size.is_some() {
        cmd.push_str(&format!(" SIZE={size}"));
    }
    let utf8 = !env.mail_from.is_ascii() || env.rcpts.iter().any(|r| !r.is_ascii());
    if utf8 && conn.caps.smtputf8 {
        cmd.push_str(" SMTPUTF8");
    }
    if let Some(delimiter) = env.xverp {
        if conn.caps.xverp {
            // Postfix's syntax: XVERP=<delimiter><separator for the @>.
            cmd.push_str(&format!(" XVERP={delimiter}="));
        } else {
            tracing::warn!(
                conn = conn.id,
                "XVERP requested but not offered by the server; sending without it"
            );
        }
    }
    cmd.push_str("\r\n");
    cmd
}

fn protocol(conn: &Connection, stage: &'static str, reply: &Reply) -> SendError {
    SendError::Protocol {
        target: conn.target.clone(),
        stage,
        detail: format!("unexpected reply {reply}"),
    }
}

/// Classifies a negative reply (4xx/5xx) into a recipient status.
fn failed(reply: Reply) -> Option<RcptStatus> {
    if reply.is_transient() {
        Some(RcptStatus::TempFailed(reply))
    } else if reply.is_permanent() {
        Some(RcptStatus::PermFailed(reply))
    } else {
        None
    }
}

/// Runs one transaction. On `Ok`, the connection is in a known state
/// (`conn.needs_rset` says whether it needs RSET first); on `Err`, only
/// [`SendError::connection_reusable`] errors leave it usable.
/// `body`, when given, follows `message` already stuffed (its slices are
/// then whole header lines).
pub(crate) async fn run(
    conn: &mut Connection,
    env: &Envelope,
    message: &[&[u8]],
    body: Option<&Stuffed>,
    data_timeout: Duration,
) -> Result<TxnOutcome, SendError> {
    let size: usize = message.iter().map(|s| s.len()).sum::<usize>() + body.map_or(0, Stuffed::len);
    if let Some(limit) = conn.caps.size {
        if limit > 0 && size > limit {
            return Err(SendError::MessageTooLarge { size, limit });
        }
    }
    let mail = mail_command(conn, env, size);
    let ct = conn.command_timeout();

    // Per recipient: Some(status) once refused at RCPT; None = accepted.
    let mut statuses: Vec<Option<RcptStatus>> = Vec::with_capacity(env.rcpts.len());
    let data_reply: Reply;

    if conn.caps.pipelining {
        let rset = conn.needs_rset;
        let mut batch = Vec::with_capacity(
            mail.len() + 16 + env.rcpts.iter().map(|r| r.len() + 12).sum::<usize>(),
        );
        if rset {
            batch.extend_from_slice(b"RSET\r\n");
        }
        batch.extend_from_slice(mail.as_bytes());
        for r in &env.rcpts {
            batch.extend_from_slice(b"RCPT TO:<");
            batch.extend_from_slice(r.as_bytes());
            batch.extend_from_slice(b">\r\n");
        }
        batch.extend_from_slice(b"DATA\r\n");
        let count = usize::from(rset) + env.rcpts.len() + 2;
        let mut replies = conn
            .pipeline(&batch, count, "MAIL/RCPT/DATA (pipelined)")
            .await?
            .into_iter();
        if rset {
            let r = replies.next().expect("count");
            if !r.is_positive() {
                return Err(protocol(conn, "RSET", &r));
            }
            conn.needs_rset = false;
        }
        let mail_reply = replies.next().expect("count");
        for _ in &env.rcpts {
            let r = replies.next().expect("count");
            if r.is_positive() {
                statuses.push(None);
            } else {
                statuses.push(Some(
                    failed(r.clone()).ok_or_else(|| protocol(conn, "RCPT", &r))?,
                ));
            }
        }
        data_reply = replies.next().expect("count");
        let accepted = mail_reply.is_positive() && statuses.iter().any(Option::is_none);
        if !accepted {
            conn.needs_rset = true;
            if data_reply.code == 354 {
                // RFC 2920: DATA accepted without a valid recipient; send an
                // empty message end and discard the reply.
                conn.write_all(b".\r\n", "end of data", ct).await?;
                conn.read_reply("end of data", data_timeout).await?;
            }
            if !mail_reply.is_positive() {
                return Err(if mail_reply.is_transient() || mail_reply.is_permanent() {
                    SendError::MailFromRejected(mail_reply)
                } else {
                    protocol(conn, "MAIL", &mail_reply)
                });
            }
            return Ok(finish(statuses, None));
        }
    } else {
        if conn.needs_rset {
            conn.write_all(b"RSET\r\n", "RSET", ct).await?;
            let r = conn.read_reply("RSET", ct).await?;
            if !r.is_positive() {
                return Err(protocol(conn, "RSET", &r));
            }
            conn.needs_rset = false;
        }
        conn.write_all(mail.as_bytes(), "MAIL", ct).await?;
        let mail_reply = conn.read_reply("MAIL", ct).await?;
        if !mail_reply.is_positive() {
            conn.needs_rset = true;
            return Err(if mail_reply.is_transient() || mail_reply.is_permanent() {
                SendError::MailFromRejected(mail_reply)
            } else {
                protocol(conn, "MAIL", &mail_reply)
            });
        }
        // From here on the server holds envelope state until DATA completes.
        conn.needs_rset = true;
        for r in &env.rcpts {
            let cmd = format!("RCPT TO:<{r}>\r\n");
            conn.write_all(cmd.as_bytes(), "RCPT", ct).await?;
            let reply = conn.read_reply("RCPT", ct).await?;
            if reply.is_positive() {
                statuses.push(None);
            } else {
                statuses.push(Some(
                    failed(reply.clone()).ok_or_else(|| protocol(conn, "RCPT", &reply))?,
                ));
            }
        }
        if statuses.iter().all(Option::is_some) {
            // Every recipient refused: no DATA; RSET before the next transaction.
            return Ok(finish(statuses, None));
        }
        conn.write_all(b"DATA\r\n", "DATA", ct).await?;
        data_reply = conn.read_reply("DATA", ct).await?;
    }

    if data_reply.code != 354 {
        conn.needs_rset = true;
        // DATA refused: every accepted recipient gets the DATA reply.
        let status =
            failed(data_reply.clone()).ok_or_else(|| protocol(conn, "DATA", &data_reply))?;
        return Ok(finish(statuses, Some(status)));
    }

    // DATA accepted: stream the message, stuffed, in moderate chunks.
    conn.needs_rset = true;
    let mut stuffer = DotStuffer::new();
    let mut buf = Vec::with_capacity(2 * CHUNK + 8);
    for slice in message {
        for piece in slice.chunks(CHUNK) {
            stuffer.push(piece, &mut buf);
            if buf.len() >= CHUNK {
                conn.write_all(&buf, "message body", data_timeout).await?;
                buf.clear();
            }
        }
    }
    if let Some(body) = body {
        // Whole header lines before it, so this only ever guards.
        stuffer.end_line(&mut buf);
        for piece in body.encoded().chunks(CHUNK) {
            buf.extend_from_slice(piece);
            if buf.len() >= CHUNK {
                conn.write_all(&buf, "message body", data_timeout).await?;
                buf.clear();
            }
        }
    }
    stuffer.finish(&mut buf);
    conn.write_all(&buf, "message body", data_timeout).await?;
    drop(buf);
    let final_reply = conn.read_reply("end of data", data_timeout).await?;
    // After the final reply the transaction is over, whatever its result.
    conn.needs_rset = false;
    let status = if final_reply.is_positive() {
        RcptStatus::Delivered(final_reply)
    } else {
        failed(final_reply.clone()).ok_or_else(|| protocol(conn, "end of data", &final_reply))?
    };
    Ok(finish(statuses, Some(status)))
}

/// Fills accepted recipients (`None`) with `accepted` (the DATA result).
fn finish(statuses: Vec<Option<RcptStatus>>, accepted: Option<RcptStatus>) -> TxnOutcome {
    let rcpts = statuses
        .into_iter()
        .map(|s| match s {
            Some(s) => s,
            None => accepted
                .clone()
                .expect("an accepted recipient implies a DATA result"),
        })
        .collect();
    TxnOutcome { rcpts }
}
