//! Configuration snippets for Postfix and Exim (`listrelay integration`).
