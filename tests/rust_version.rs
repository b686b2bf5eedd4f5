//! `rust-version` is a promise: every locked dependency builds with it
//! (clippy's `incompatible_msrv` checks this code against it), so a
//! dependency update that needs a newer compiler fails here until the
//! promise is raised on purpose. Run `cargo update` with resolver 3 and it
//! picks versions that keep it.

use std::process::Command;

fn version(text: &str) -> Vec<u64> {
    text.split('.').map(|part| part.parse().unwrap_or(0)).collect()
}

#[test]
fn every_dependency_builds_with_the_declared_rust_version() {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let declared = env!("CARGO_PKG_RUST_VERSION");
    assert!(!declared.is_empty(), "the workspace declares a rust-version");
    let members: Vec<&serde_json::Value> = metadata["workspace_members"].as_array().unwrap().iter().collect();
    let too_new: Vec<String> = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| !members.contains(&&p["id"]))
        .filter_map(|p| {
            let needs = p["rust_version"].as_str()?;
            (version(needs) > version(declared)).then(|| format!("{} {} needs {needs}", p["name"], p["version"]))
        })
        .collect();
    assert!(too_new.is_empty(), "rust-version is {declared}, but: {too_new:?}");
    for member in metadata["packages"].as_array().unwrap().iter().filter(|p| members.contains(&&p["id"])) {
        assert_eq!(member["rust_version"], declared, "{} inherits the workspace's rust-version", member["name"]);
    }
}
