//! The Grafana dashboard and the Prometheus alert rules in contrib/ use only
//! metrics (and label names and values) that the server exports: a renamed
//! metric must not leave a panel empty or an alert that can never fire.

use std::collections::BTreeSet;
use std::path::Path;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Every `.rs` file under `dir`, as text.
fn sources(dir: &Path, out: &mut String) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push_str(&std::fs::read_to_string(&path).unwrap());
        }
    }
}

/// The metric names src/ registers with `counter!`, `gauge!` or `histogram!`.
fn exported(src: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for mac in ["counter!(", "gauge!(", "histogram!("] {
        for (at, _) in src.match_indices(mac) {
            let rest = src[at + mac.len()..].trim_start();
            if let Some(quoted) = rest.strip_prefix('"') {
                names.insert(quoted[..quoted.find('"').unwrap()].to_string());
            }
        }
    }
    names
}

/// The `listrelay_…` names a rules or dashboard file uses.
fn used(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (at, _) in text.match_indices("listrelay_") {
        let name: String = text[at..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        names.insert(name);
    }
    names
}

/// `(label, operator, value)` of every label matcher in PromQL selectors.
fn matchers(text: &str) -> Vec<(String, String, String)> {
    let text = text.replace("\\\"", "\"");
    let mut found = Vec::new();
    for (at, _) in text.match_indices('{') {
        let Some(end) = text[at..].find('}') else {
            continue;
        };
        for part in text[at + 1..at + end].split(',') {
            let part = part.trim();
            for op in ["!~", "=~", "!=", "="] {
                if let Some((label, value)) = part.split_once(op) {
                    let label = label.trim();
                    let value = value.trim();
                    if label.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                        && !label.is_empty()
                        && value.starts_with('"')
                        && value.ends_with('"')
                    {
                        let value = value.trim_matches('"').to_string();
                        found.push((label.to_string(), op.to_string(), value));
                    }
                    break;
                }
            }
        }
    }
    found
}

#[test]
fn dashboard_and_alerts_use_only_exported_metrics() {
    let mut src = String::new();
    sources(&Path::new(ROOT).join("src"), &mut src);
    let metrics = exported(&src);
    assert!(
        metrics.len() > 20,
        "too few metrics found in src/: {metrics:?}"
    );
    for file in [
        "contrib/grafana-dashboard.json",
        "contrib/prometheus-alerts.yml",
    ] {
        let text = std::fs::read_to_string(Path::new(ROOT).join(file)).unwrap();
        let names = used(&text);
        assert!(names.len() >= 5, "{file} uses hardly any metric: {names:?}");
        for name in &names {
            // A histogram is scraped as NAME_bucket, NAME_sum and NAME_count.
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|b| metrics.contains(*b)))
                .unwrap_or(name);
            assert!(
                metrics.contains(base),
                "{file} uses {name}, which src/ does not export (known: {metrics:?})"
            );
        }
        for (label, op, value) in matchers(&text) {
            // Prometheus's own labels and the dashboard's variable.
            if ["instance", "job", "le"].contains(&label.as_str()) {
                continue;
            }
            assert!(
                src.contains(&format!("\"{label}\" =>")),
                "{file}: label {label} is not set by src/"
            );
            let values: Vec<&str> = if op.contains('~') {
                value.split('|').collect()
            } else {
                vec![value.as_str()]
            };
            for v in values {
                assert!(
                    src.contains(&format!("\"{v}\"")),
                    "{file}: {label}{op}\"{value}\": {v:?} is never a value in src/"
                );
            }
        }
    }
}

#[test]
fn the_dashboard_has_the_panels_an_operator_needs() {
    let text =
        std::fs::read_to_string(Path::new(ROOT).join("contrib/grafana-dashboard.json")).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).unwrap();
    let titles: Vec<&str> = dash["panels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    for want in [
        "Intake rate",
        "Queue depth",
        "Fan-out rate",
        "Hand-off failures",
        "Bounces",
        "Held posts",
    ] {
        assert!(titles.contains(&want), "no {want:?} panel in {titles:?}");
    }
    let rules =
        std::fs::read_to_string(Path::new(ROOT).join("contrib/prometheus-alerts.yml")).unwrap();
    for alert in [
        "ListrelayQueueGrowing",
        "ListrelayMtaUnreachable",
        "ListrelayBounceSpike",
    ] {
        assert!(rules.contains(&format!("alert: {alert}")), "no {alert}");
    }
}
