//! The `nelumbo` binary as a user runs it: `commp` on files and standard input, `proofs params
//! --check`, and clear errors for bad input.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn nelumbo(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nelumbo"))
        .args(args)
        .output()
        .expect("run nelumbo")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn json(output: &Output) -> serde_json::Value {
    assert!(output.status.success(), "failed: {}", stderr(output));
    serde_json::from_slice(&output.stdout).expect("JSON output")
}

fn testdata() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/commp")
}

#[test]
fn commp_json_matches_the_published_vectors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let vectors = std::fs::read_to_string(testdata().join("commp-0xCC.txt")).expect("vectors");
    for line in vectors.lines().filter(|l| !l.is_empty()).take(8) {
        let fields: Vec<&str> = line.split(',').collect();
        let size: usize = fields[0].parse().expect("size");
        let file = dir.path().join(format!("cc-{size}"));
        std::fs::write(&file, vec![0xCC; size]).expect("write");
        let value = json(&nelumbo(&["commp", "--json", path(&file)]));
        assert_eq!(value["piece_cid"], fields[2], "{size} bytes");
        assert_eq!(value["piece_size"], fields[1].parse::<u64>().expect("size"));
        assert_eq!(value["payload_size"], size as u64);
        assert!(
            value["piece_cid_v2"]
                .as_str()
                .is_some_and(|v2| v2.starts_with("bafkzcib")),
            "{value}"
        );
    }
}

#[test]
fn commp_reads_standard_input() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_nelumbo"))
        .args(["commp", "--json", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&[0u8; 127])
        .expect("write");
    let value = json(&child.wait_with_output().expect("wait"));
    assert_eq!(
        value["piece_cid"],
        "baga6ea4seaqdomn3tgwgrh3g532zopskstnbrd2n3sxfqbze7rxt7vqn7veigmy"
    );
    assert_eq!(
        value["piece_cid_v2"],
        "bafkzcibcaabdomn3tgwgrh3g532zopskstnbrd2n3sxfqbze7rxt7vqn7veigmy"
    );
}

#[test]
fn commp_bad_input_gets_clear_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let empty = dir.path().join("empty.car");
    std::fs::write(&empty, b"").expect("write");
    // One byte more than the largest sector holds, as a sparse file: refused before hashing.
    let huge = dir.path().join("huge.car");
    std::fs::File::create(&huge)
        .and_then(|f| f.set_len(nelumbo_commp::MAX_PAYLOAD + 1))
        .expect("sparse file");
    let cases = [
        (path(&empty).to_string(), "is empty"),
        (path(&huge).to_string(), "capacity of the largest sector"),
        (
            path(&dir.path().join("missing.car")).to_string(),
            "No such file",
        ),
        (path(dir.path()).to_string(), "is a directory"),
    ];
    for (arg, expected) in cases {
        let output = nelumbo(&["commp", &arg]);
        assert!(!output.status.success(), "{arg} succeeded");
        let text = stderr(&output);
        assert!(text.contains(expected), "{arg}: {text}");
        assert!(text.contains(&arg), "the error does not name {arg}: {text}");
    }
}

#[test]
fn a_sector_size_that_does_not_exist_is_refused() {
    let output = nelumbo(&["proofs", "params", "--sector-size", "3KiB"]);
    assert!(!output.status.success());
    let text = stderr(&output);
    assert!(text.contains("unsupported sector size 3KiB"), "{text}");
    assert!(text.contains("2KiB, 8MiB, 512MiB, 32GiB, 64GiB"), "{text}");
}

#[test]
fn params_check_reports_missing_parameters_and_how_to_get_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = Command::new(env!("CARGO_BIN_EXE_nelumbo"))
        .args(["proofs", "params", "--sector-size", "8MiB", "--check"])
        .env("FIL_PROOFS_PARAMETER_CACHE", dir.path())
        .output()
        .expect("run");
    assert!(!output.status.success(), "an empty cache passed the check");
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(out.contains("8MiB PoRep: missing"), "{out}");
    let text = stderr(&output);
    assert!(
        text.contains("nelumbo proofs params --sector-size 8MiB"),
        "{text}"
    );
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// `config default` of both daemons: a documented TOML file with every section, printed
/// without a repo (an operator reads it before `init`).
#[test]
fn the_daemons_print_their_default_config() {
    let dir = tempfile::tempdir().expect("dir");
    for (daemon, sections) in [
        (
            "nelumbo-miner",
            &[
                "api", "chain", "storage", "proofs", "sealing", "mining", "deals", "spokes",
            ][..],
        ),
        (
            "nelumbo-markets",
            &[
                "network",
                "api",
                "deals",
                "ask",
                "retrieval",
                "indexing",
                "database",
            ][..],
        ),
    ] {
        let output = Command::new(Path::new(env!("CARGO_BIN_EXE_nelumbo")).with_file_name(daemon))
            .arg("--repo")
            .arg(dir.path().join("none"))
            .args(["config", "default"])
            .output()
            .unwrap_or_else(|e| panic!("run {daemon}: {e}"));
        assert!(output.status.success(), "{daemon}: {}", stderr(&output));
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(text.starts_with(&format!("# {daemon} ")), "{text}");
        let parsed: toml::Table = text
            .parse()
            .unwrap_or_else(|e| panic!("{daemon}: {e}\n{text}"));
        for section in sections {
            assert!(
                parsed.contains_key(*section),
                "{daemon} has no [{section}]:\n{text}"
            );
        }
        assert!(!dir.path().join("none").exists(), "{daemon} made a repo");
    }
}
