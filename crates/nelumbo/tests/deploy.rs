//! The deployment files in `deploy/` are valid for the tools that read them: the systemd units
//! pass `systemd-analyze verify` (with no warning: an unknown or misspelt directive is a
//! warning there, and a hardening line that is silently ignored protects nothing), and they
//! carry the hardening and confinement the operator's guide promises.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_nelumbo"))
        .parent()
        .expect("bin dir")
        .to_path_buf()
}

#[test]
fn the_systemd_units_verify_cleanly_and_are_hardened() {
    let units = repo_root().join("deploy/systemd");
    let dir = tempfile::tempdir().expect("dir");
    // The units name /usr/local/bin; verify checks that ExecStart exists, so point it at the
    // binaries this test run built.
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&units).expect("deploy/systemd") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(&path).expect("unit");
        let here = text.replace("/usr/local/bin/", &format!("{}/", bin_dir().display()));
        std::fs::write(dir.path().join(&name), here).expect("write");
        names.push(name);
    }
    names.sort();
    assert_eq!(
        names,
        ["nelumbo-markets@.service", "nelumbo-miner.service"],
        "the units this test knows"
    );
    // A template is verified through an instance of it.
    std::os::unix::fs::symlink(
        "nelumbo-markets@.service",
        dir.path().join("nelumbo-markets@retrieval.service"),
    )
    .expect("symlink");
    for binary in ["nelumbo-miner", "nelumbo-markets"] {
        assert!(
            bin_dir().join(binary).exists(),
            "build {binary} first (scripts/test builds the workspace)"
        );
    }
    let output = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(dir.path().join("nelumbo-miner.service"))
        .arg(dir.path().join("nelumbo-markets@retrieval.service"))
        .output()
        .expect("systemd-analyze (scripts/setup installs systemd)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{said}");
    assert!(said.trim().is_empty(), "systemd-analyze warns: {said}");

    // The hardening every unit carries, and the spoke's confinement.
    let hardening = [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=\n",
        "Restart=always",
        "MemoryDenyWriteExecute=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
    ];
    for name in &names {
        let text = std::fs::read_to_string(units.join(name)).expect("unit");
        for line in hardening {
            assert!(text.contains(line), "{name} lacks {line:?}");
        }
    }
    let markets = std::fs::read_to_string(units.join("nelumbo-markets@.service")).expect("unit");
    for line in ["CPUQuota=", "MemoryMax=", "CPUWeight=50"] {
        assert!(markets.contains(line), "the spoke's unit lacks {line}");
    }
    let hub = std::fs::read_to_string(units.join("nelumbo-miner.service")).expect("unit");
    assert!(hub.contains("CPUWeight=1000") && hub.contains("ReadWritePaths="));
}

/// promtool from the PATH, else where scripts/setup unpacks it.
fn promtool() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("promtool"))
        .find(|p| p.is_file());
    on_path.unwrap_or_else(|| {
        let cached = Path::new(&std::env::var_os("HOME").expect("HOME"))
            .join(".cache/nelumbo/prometheus/promtool");
        assert!(
            cached.is_file(),
            "no promtool: run scripts/setup (it unpacks one into {})",
            cached.display()
        );
        cached
    })
}

fn promtool_says(args: &[&str]) -> (bool, String) {
    let output = Command::new(promtool())
        .args(args)
        .current_dir(repo_root().join("deploy/prometheus"))
        .output()
        .expect("run promtool");
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

#[test]
fn the_alert_rules_check_and_each_alert_fires_in_its_rule_test() {
    let (ok, said) = promtool_says(&["check", "config", "prometheus.yml"]);
    assert!(ok, "{said}");
    let (ok, said) = promtool_says(&["check", "rules", "alerts.yml"]);
    assert!(ok, "{said}");
    let (ok, said) = promtool_says(&["test", "rules", "alerts.test.yml"]);
    assert!(ok, "{said}");

    // Every alert has a firing case in the rule tests and a runbook in the operator's guide.
    let rules = std::fs::read_to_string(repo_root().join("deploy/prometheus/alerts.yml"))
        .expect("alerts.yml");
    let tests = std::fs::read_to_string(repo_root().join("deploy/prometheus/alerts.test.yml"))
        .expect("alerts.test.yml");
    let guide = std::fs::read_to_string(repo_root().join("docs/operations.md")).expect("the guide");
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert!(alerts.len() >= 13, "{alerts:?}");
    for alert in alerts {
        let firing = tests
            .split("alertname: ")
            .skip(1)
            .filter(|case| case.starts_with(&format!("{alert}\n")))
            .any(|case| case.contains("exp_labels"));
        assert!(firing, "no rule test shows {alert} firing");
        assert!(
            guide.contains(&format!("### {alert}")),
            "docs/operations.md has no runbook for {alert}"
        );
    }
}
