//! Bounce parsing and scoring (see docs/architecture.md).
