//! The server's floors, held by a test that reads the source: each folder of `src/` may use
//! only the floors beneath it, the domain stays free of I/O so that every rule is unit-tested
//! without a server, flows render nothing, and no handler calls another handler. A change that
//! breaks one of these fails here with the file and the line.

use std::path::{Path, PathBuf};

/// Each part of `src/` and the parts of this crate it may use (its own always).
const FLOORS: &[(&str, &[&str])] = &[
    ("domain", &[]),
    ("auth", &[]),
    ("clock", &[]),
    ("config", &["domain"]),
    ("store", &["domain", "clock", "config"]),
    ("notify", &["domain", "config", "store"]),
    ("import", &["domain", "store", "clock", "config"]),
    ("state", &["domain", "clock", "config", "store"]),
    (
        "flows",
        &[
            "domain", "clock", "config", "store", "state", "auth", "notify",
        ],
    ),
    (
        "jobs",
        &[
            "domain", "clock", "config", "store", "state", "flows", "notify",
        ],
    ),
    (
        "http",
        &[
            "domain", "clock", "config", "store", "state", "flows", "auth", "import",
        ],
    ),
];

/// Crates a part may not use at all: the domain does no I/O, and below the front ends nothing
/// speaks HTTP.
const FORBIDDEN_CRATES: &[(&str, &[&str])] = &[
    (
        "domain",
        &[
            "axum", "sqlx", "tokio", "reqwest", "tower", "std::fs", "std::net",
        ],
    ),
    ("store", &["axum", "tower"]),
    ("state", &["axum", "tower"]),
    ("flows", &["axum", "tower"]),
    ("jobs", &["axum", "tower"]),
];

/// Modules of `http/` that handlers share and may use: problem answers, the caller, shared
/// views and lookups, the device connection and the OpenAPI schemas.
const SHARED_HTTP: &[&str] = &[
    "problem",
    "caller",
    "common",
    "device_connection",
    "schemas",
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir` (or `dir.rs` itself), with its text.
fn files_of(part: &str) -> Vec<(PathBuf, String)> {
    let dir = src().join(part);
    let mut out = Vec::new();
    let mut stack = vec![dir.clone()];
    if !dir.is_dir() {
        let file = src().join(format!("{part}.rs"));
        let text = std::fs::read_to_string(&file).expect("read source file");
        return vec![(file, text)];
    }
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read source folder") {
            let path = entry.expect("folder entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("read source file");
                out.push((path, text));
            }
        }
    }
    out
}

/// The code of a file without its unit tests and comments, line by line with line numbers.
fn code_lines(text: &str) -> Vec<(usize, &str)> {
    let end = text.find("#[cfg(test)]").unwrap_or(text.len());
    text[..end]
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.starts_with("//"))
        .collect()
}

/// The parts of this crate a line names as `crate::part`.
fn crate_parts(line: &str) -> Vec<&str> {
    line.match_indices("crate::")
        .filter(|(i, _)| {
            !line[..*i].ends_with('_') && !line[..*i].ends_with(|c: char| c.is_alphanumeric())
        })
        .map(|(i, m)| {
            let rest = &line[i + m.len()..];
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .collect()
}

fn violations_of_floors() -> Vec<String> {
    let mut found = Vec::new();
    for (part, allowed) in FLOORS {
        for (path, text) in files_of(part) {
            for (n, line) in code_lines(&text) {
                for used in crate_parts(line) {
                    if used != *part && !allowed.contains(&used) && !used.is_empty() {
                        found.push(format!("{}:{n}: {part} uses crate::{used}", path.display()));
                    }
                }
            }
        }
    }
    found
}

#[test]
fn every_part_uses_only_the_floors_beneath_it() {
    let found = violations_of_floors();
    assert!(
        found.is_empty(),
        "arrows that run up:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_domain_does_no_io_and_nothing_below_the_front_ends_speaks_http() {
    let mut found = Vec::new();
    for (part, crates) in FORBIDDEN_CRATES {
        for (path, text) in files_of(part) {
            for (n, line) in code_lines(&text) {
                for word in *crates {
                    let used = line.starts_with(&format!("use {word}"))
                        || line.contains(&format!(" {word}::"))
                        || line.contains(&format!("({word}::"))
                        || line.contains(&format!("<{word}::"));
                    if used {
                        found.push(format!("{}:{n}: {part} uses {word}", path.display()));
                    }
                }
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// The handler modules of `http/`: every file but `mod.rs` and the shared ones.
fn handler_modules() -> Vec<String> {
    files_of("http")
        .iter()
        .filter_map(|(p, _)| p.file_stem()?.to_str().map(str::to_string))
        .filter(|m| m != "mod" && !SHARED_HTTP.contains(&m.as_str()))
        .collect()
}

#[test]
fn no_handler_calls_another_handler() {
    let handlers = handler_modules();
    assert!(handlers.len() > 10, "handlers found: {handlers:?}");
    let mut found = Vec::new();
    for (path, text) in files_of("http") {
        let me = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        for (n, line) in code_lines(&text) {
            for other in handlers.iter().filter(|h| h.as_str() != me) {
                let named = [
                    format!("super::{other}::"),
                    format!("http::{other}::"),
                    format!("super::{{{other}"),
                    format!("super::{other};"),
                ];
                if me != "mod" && named.iter().any(|n| line.contains(n.as_str())) {
                    found.push(format!(
                        "{}:{n}: {me} uses the handler {other}",
                        path.display()
                    ));
                }
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn only_the_server_start_up_mounts_the_http_layer() {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(src()).expect("src") {
        let path = entry.expect("entry").path();
        let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if ["http", "server", "lib", "main"].contains(&name) {
            continue;
        }
        let part = name.to_string();
        for (file, text) in files_of(&part) {
            for (n, line) in code_lines(&text) {
                if crate_parts(line).contains(&"http") {
                    found.push(format!("{}:{n}: {part} uses crate::http", file.display()));
                }
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// The checks above would pass on an empty tree; this one makes sure they read the code and
/// that each would catch what it is for.
#[test]
fn the_checks_see_an_arrow_that_runs_up() {
    assert_eq!(crate_parts("use crate::http::AppState;"), vec!["http"]);
    assert_eq!(
        crate_parts("let x = crate::store::a(crate::domain::b);"),
        vec!["store", "domain"]
    );
    assert!(crate_parts("use agent_crate::x;").is_empty());
    assert!(files_of("domain").len() > 10);
    assert!(files_of("flows").len() >= 5);
}
