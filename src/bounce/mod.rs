//! Bounce parsing and scoring (stub until the parser lands).
#[derive(Debug, Clone, serde::Serialize)]
pub struct BounceReport {
    pub recipients: Vec<String>,
    pub hard: Option<bool>,
    pub status: Option<String>,
}
pub fn parse(_raw: &[u8]) -> BounceReport {
    BounceReport {
        recipients: vec![],
        hard: None,
        status: None,
    }
}
