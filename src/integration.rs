//! Configuration snippets for Postfix and Exim (stub until the harness lands).
pub enum LmtpTarget {
    Tcp(String),
    Unix(std::path::PathBuf),
}
pub struct Params {
    pub domains: Vec<DomainParams>,
    pub lmtp: LmtpTarget,
    pub reinject: String,
    pub delimiter: char,
}
pub struct DomainParams {
    pub name: String,
    pub local_parts: Vec<String>,
}
pub struct Snippet {
    pub file: &'static str,
    pub description: &'static str,
    pub contents: String,
}
pub fn postfix(_p: &Params) -> Vec<Snippet> {
    vec![]
}
pub fn exim(_p: &Params) -> Vec<Snippet> {
    vec![]
}
