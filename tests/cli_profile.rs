//! `brats-seg profile` end to end at 32³: the JSON parses, covers the topology's FLOPs,
//! times are non-negative and add up to the total, and the Chrome trace parses.
use std::process::Command;

#[test]
fn profile_json_and_trace() {
    let dir = std::env::temp_dir().join(format!("brats-profile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let trace = dir.join("trace.json");
    let out = Command::new(env!("CARGO_BIN_EXE_brats-seg"))
        .args([
            "profile",
            "--synthetic",
            "--size",
            "32",
            "--threads",
            "2",
            "--json",
            "--trace",
        ])
        .arg(&trace)
        .env("XDG_CACHE_HOME", &dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("stdout is one JSON object");
    let layers = v["layers"].as_array().unwrap();
    let total = v["total_ms"].as_f64().unwrap();
    let sum_ms: f64 = layers.iter().map(|l| l["ms"].as_f64().unwrap()).sum();
    assert!(layers.iter().all(|l| l["ms"].as_f64().unwrap() >= 0.0));
    assert!(
        (sum_ms - total).abs() <= 1e-6 * total.max(1.0),
        "{sum_ms} vs {total}"
    );
    let gflop: f64 = layers.iter().map(|l| l["gflop"].as_f64().unwrap()).sum();
    // A 32³ pass is exactly 1/64 of the 128³ one: 406.2687 / 64 GFLOP.
    assert!((gflop - 406.268674048 / 64.0).abs() < 1e-6, "{gflop}");
    assert!(v["peak_gflops"].as_f64().unwrap() > 0.0);
    for key in ["name", "kind", "gflop", "ms", "gflops", "pct_peak", "bytes"] {
        assert!(
            layers.iter().all(|l| !l[key].is_null()),
            "layer field {key}"
        );
    }
    assert!(layers.iter().any(|l| l["name"] == "net128.rb7.conv1"));
    let t: serde_json::Value = serde_json::from_slice(&std::fs::read(&trace).unwrap()).unwrap();
    let events = t["traceEvents"].as_array().unwrap();
    assert!(events.len() >= layers.len());
    let complete: Vec<_> = events.iter().filter(|e| e["ph"] == "X").collect();
    assert!(complete.iter().all(|e| e["dur"].as_f64().unwrap() >= 0.0));
    // Layer calls on track 0, kernel tasks on one track per worker thread (2 here).
    assert!(complete.iter().filter(|e| e["tid"] == 0).count() >= layers.len());
    let workers: std::collections::BTreeSet<_> = complete
        .iter()
        .filter(|e| e["cat"] == "task")
        .map(|e| e["tid"].as_i64().unwrap())
        .collect();
    assert!(
        !workers.is_empty() && workers.len() <= 2,
        "worker tracks {workers:?}"
    );
    assert!(complete
        .iter()
        .any(|e| e["cat"] == "task" && e["name"] == "net128.rb7.conv1"));
    std::fs::remove_dir_all(&dir).unwrap();
}
