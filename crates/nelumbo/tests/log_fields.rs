//! The ids an operator searches logs by have one spelling everywhere: `sector`, `deal_uuid`,
//! `deal_id`, `piece_cid`, `message_cid`, `proposal_cid`, `peer`. This reads every
//! `tracing::...!(...)` in the workspace's sources and refuses the ambiguous field names
//! (`deal`: a UUID or an ID? `piece`, `message`, `cid`, ...), so a new log line cannot bring a
//! second spelling back.

use std::path::{Path, PathBuf};

/// Field names that must not be used, with the spelling to use instead.
const REFUSED: &[(&str, &str)] = &[
    ("deal", "deal_uuid or deal_id"),
    ("uuid", "deal_uuid"),
    ("piece", "piece_cid"),
    ("message", "message_cid (a CID) or detail (text)"),
    ("msg", "message_cid"),
    ("proposal", "proposal_cid"),
    (
        "cid",
        "piece_cid, message_cid, proposal_cid or another named CID",
    ),
    ("sector_number", "sector"),
    ("peer_id", "peer"),
];

fn sources(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// The argument text of each `tracing::LEVEL!(...)` in `text`, with its line.
fn tracing_calls(text: &str) -> Vec<(usize, &str)> {
    let mut calls = Vec::new();
    for level in ["trace", "debug", "info", "warn", "error"] {
        let opening = format!("tracing::{level}!(");
        for (start, _) in text.match_indices(&opening) {
            let args = start + opening.len();
            let mut depth = 1;
            let mut end = args;
            for (i, c) in text[args..].char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                if depth == 0 {
                    end = args + i;
                    break;
                }
            }
            calls.push((text[..start].lines().count() + 1, &text[args..end]));
        }
    }
    calls
}

/// The field names of a call's arguments: `name = value`, `%name`, `?name` or `name`, up to
/// the message (the first argument that is a string literal).
fn field_names(args: &str) -> Vec<String> {
    // Top-level arguments: commas inside brackets or string literals do not split.
    let mut parts = Vec::new();
    let (mut depth, mut in_string, mut escaped) = (0, false, false);
    let mut part = String::new();
    for c in args.chars() {
        if in_string {
            in_string = escaped || c != '"';
            escaped = !escaped && c == '\\';
        } else {
            match c {
                '"' => in_string = true,
                '(' | '[' | '{' => depth += 1,
                ')' | ']' | '}' => depth -= 1,
                ',' if depth == 0 => {
                    parts.push(std::mem::take(&mut part));
                    continue;
                }
                _ => {}
            }
        }
        part.push(c);
    }
    parts.push(part);
    let mut names = Vec::new();
    for part in parts {
        let part = part.trim();
        if part.starts_with('"') {
            break;
        }
        let name = match part.split_once('=') {
            Some((name, _)) => name.trim(),
            None => part.trim_start_matches(['%', '?']),
        };
        if !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_') {
            names.push(name.to_string());
        }
    }
    names
}

#[test]
fn log_fields_spell_each_id_one_way() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&root).expect("crates") {
        let src = entry.expect("entry").path().join("src");
        if src.is_dir() {
            sources(&src, &mut files);
        }
    }
    assert!(files.len() > 50, "found only {} sources", files.len());
    let mut wrong = Vec::new();
    let mut calls = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read");
        for (line, args) in tracing_calls(&text) {
            calls += 1;
            for name in field_names(args) {
                if let Some((_, instead)) = REFUSED.iter().find(|(n, _)| *n == name) {
                    wrong.push(format!(
                        "{}:{line}: `{name}`: use {instead}",
                        file.display()
                    ));
                }
            }
        }
    }
    assert!(calls > 100, "found only {calls} log calls");
    assert!(wrong.is_empty(), "log fields:\n{}", wrong.join("\n"));
}

#[test]
fn fields_are_read_as_tracing_reads_them() {
    assert_eq!(
        field_names(
            r#"deal_uuid = %uuid, %peer, error = %format!("{e:#}, {}", x), retry_in = ?d, "failed: {}", y"#
        ),
        ["deal_uuid", "peer", "error", "retry_in"]
    );
    assert_eq!(
        field_names(r#""no fields: {message}""#),
        Vec::<String>::new()
    );
    assert_eq!(field_names(r#"?cid, n = f(a, b), "x""#), ["cid", "n"]);
}
