//! listrelay: a mailing-list engine that sits behind Postfix or Exim.
//!
//! The module tree reads as the pipeline: `lmtp` (session) → `intake` (routing,
//! Message-ID, policy) → `store` (durable state) → `fanout` → `smtp`
//! (re-injection); `bounce` beside it; `cli` and `config` at the edge.
//! docs/architecture.md draws the picture.

pub mod bounce;
pub mod integration;
pub mod smtp;
