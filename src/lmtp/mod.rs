//! The LMTP front end (RFC 2033): listeners, sessions and replies. It only
//! receives and hands over to [`crate::intake`].

pub mod reply;
mod server;
mod session;

pub use server::{bind, Listeners};
pub use session::{run as run_session, SessionConfig};
