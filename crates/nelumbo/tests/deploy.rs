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
    tool("promtool", ".cache/nelumbo/prometheus/promtool")
}

/// `name` from the PATH, else at `cached` under the home directory (where scripts/setup puts
/// it).
fn tool(name: &str, cached: &str) -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|p| p.is_file());
    on_path.unwrap_or_else(|| {
        let cached = Path::new(&std::env::var_os("HOME").expect("HOME")).join(cached);
        assert!(
            cached.is_file(),
            "no {name}: run scripts/setup (it installs one at {})",
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

/// Every metric name the daemons register: the `"nelumbo_..."` string literals in their
/// sources.
fn registered_metrics() -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    let mut stack = vec![repo_root().join("crates")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                if !path.ends_with("tests") && !path.ends_with("benches") {
                    stack.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("source");
                for piece in text.split("\"nelumbo_").skip(1) {
                    if let Some(name) = piece.split('"').next()
                        && name
                            .chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                    {
                        names.insert(format!("nelumbo_{name}"));
                    }
                }
            }
        }
    }
    names
}

/// The `nelumbo_*` metric names a PromQL expression reads (histogram series reduced to their
/// metric).
fn metrics_read_by(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with("nelumbo_"))
        .map(|word| {
            ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|suffix| word.strip_suffix(suffix))
                .unwrap_or(word)
                .to_string()
        })
        .collect()
}

#[test]
fn the_dashboard_and_the_alerts_read_only_metrics_the_daemons_export() {
    let registered = registered_metrics();
    assert!(registered.len() > 40, "{registered:?}");
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("deploy/grafana/nelumbo.json"))
            .expect("the dashboard"),
    )
    .expect("the dashboard is JSON");
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|panel| panel["targets"].as_array().cloned().unwrap_or_default())
        .map(|target| target["expr"].as_str().expect("an expr").to_string())
        .collect();
    assert!(exprs.len() >= 14, "{exprs:?}");
    let rules = std::fs::read_to_string(repo_root().join("deploy/prometheus/alerts.yml"))
        .expect("alerts.yml");
    for expr in exprs.iter().map(String::as_str).chain([rules.as_str()]) {
        for metric in metrics_read_by(expr) {
            assert!(
                registered.contains(&metric),
                "{metric} (in {expr:.80}) is not a metric any daemon exports"
            );
        }
    }

    // Each dashboard query is valid PromQL: promtool checks them as recording rules, with
    // Grafana's interval variables given values.
    let dir = tempfile::tempdir().expect("dir");
    let mut file = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, expr) in exprs.iter().enumerate() {
        let expr = expr
            .replace("$__rate_interval", "5m")
            .replace("$__range", "6h");
        file.push_str(&format!(
            "      - record: dashboard_query_{i}\n        expr: {}\n",
            serde_json::to_string(&expr).expect("quoted")
        ));
    }
    let path = dir.path().join("dashboard.yml");
    std::fs::write(&path, file).expect("write");
    let (ok, said) = promtool_says(&["check", "rules", path.to_str().expect("path")]);
    assert!(ok, "{said}");
}

/// The Kubernetes manifests validate strictly (an unknown or misspelt field fails) against the
/// schemas of Kubernetes 1.30 and 1.37, with kubernetes-validate (offline: its schemas are
/// bundled), and hold what the operator's guide promises of them.
#[test]
fn the_kubernetes_manifests_validate_against_the_schemas() {
    let dir = repo_root().join("deploy/kubernetes");
    let validator = tool(
        "kubernetes-validate",
        ".cache/nelumbo/venv/bin/kubernetes-validate",
    );
    let mut manifests: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("deploy/kubernetes")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        // Kustomize's own file, not a Kubernetes object.
        .filter(|p| !p.ends_with("kustomization.yaml"))
        .collect();
    manifests.sort();
    assert!(manifests.len() >= 5, "{manifests:?}");
    let validate = |version: &str, files: &[PathBuf]| {
        let output = Command::new(&validator)
            .args(["--strict", "--quiet", "--kubernetes-version", version])
            .args(files)
            .output()
            .expect("run kubernetes-validate");
        (
            output.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        )
    };
    for version in ["1.30.0", "1.37.0"] {
        let (ok, said) = validate(version, &manifests);
        assert!(ok, "Kubernetes {version}: {said}");
    }
    // The validator really checks: a misspelt field fails.
    let scratch = tempfile::tempdir().expect("dir");
    let typo = scratch.path().join("typo.yaml");
    let retrieval = std::fs::read_to_string(dir.join("retrieval.yaml")).expect("retrieval.yaml");
    std::fs::write(&typo, retrieval.replace("  replicas: 2", "  replica: 2")).expect("write");
    let (ok, said) = validate("1.37.0", &[typo]);
    assert!(!ok && said.contains("replica"), "{said}");

    // What docs/operations.md says of them.
    for promised in [
        "kind: Deployment",
        "kind: PodDisruptionBudget",
        "kind: HorizontalPodAutoscaler",
        "path: /health/live",
        "path: /health/ready",
        "readOnlyRootFilesystem: true",
        "--services=retrieval",
        "NELUMBO_DATABASE_URL",
    ] {
        assert!(
            retrieval.contains(promised),
            "retrieval.yaml lacks {promised}"
        );
    }
    let policies = std::fs::read_to_string(dir.join("networkpolicy.yaml")).expect("policies");
    assert!(policies.contains("name: default-deny") && policies.contains("port: 2345"));
    let kustomization =
        std::fs::read_to_string(dir.join("kustomization.yaml")).expect("kustomization");
    for manifest in &manifests {
        let name = manifest.file_name().expect("name").to_string_lossy();
        assert_eq!(
            kustomization.contains(&format!("- {name}")),
            !name.contains("example"),
            "kustomization.yaml and {name}"
        );
    }
}
