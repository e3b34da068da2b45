//! Reads one message on stdin and prints the bounce parser's JSON report.

use std::io::Read;

fn main() {
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut input) {
        eprintln!("bounce-json: reading stdin: {e}");
    }
    let report = listrelay::bounce::parse(&input);
    match serde_json::to_string(&report) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("bounce-json: {e}"),
    }
}
