//! listrelay: a mailing-list engine that sits behind Postfix or Exim.
//!
//! The module tree reads as the pipeline: `lmtp` (session) → `intake` (routing,
//! Message-ID, policy) → `store` (durable state) → `fanout` → `smtp`
//! (re-injection); `bounce` beside it; `admin`, `cli` and `config` at the edge.
//! docs/architecture.md draws the picture.

pub mod address;
pub mod admin;
pub mod auth;
pub mod bounce;
pub mod check;
pub mod cli;
pub mod clock;
pub mod config;
pub mod digest;
pub mod fanout;
pub mod http;
pub mod import;
pub mod intake;
pub mod integration;
pub mod lmtp;
pub mod mime;
pub mod model;
pub mod moderation;
pub mod notice;
pub mod oneclick;
pub mod poll_loop;
pub mod requests;
pub mod secret;
pub mod serve;
pub mod site;
pub mod smtp;
pub mod store;
pub mod subscription;
pub mod telemetry;
pub mod templates;
pub mod verp;
pub mod web;
