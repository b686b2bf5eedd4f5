//! The committed `openapi/*.yaml` must be what the code generates; when
//! they drift this fails with a diff and the command that fixes it.

#[test]
fn committed_documents_match_the_code() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi");
    let mut drifted = Vec::new();
    for (file, doc) in order_system::openapi_documents() {
        let generated = order_system::to_yaml(&doc);
        let committed = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
        if generated != committed {
            drifted.push(format!("--- openapi/{file} (committed)\n+++ generated\n{}", diff(&committed, &generated)));
        }
    }
    let page = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/problems.md");
    let committed = std::fs::read_to_string(page).unwrap_or_default();
    let generated = order_system::problem_catalogue_page();
    if generated != committed {
        drifted.push(format!("--- docs/problems.md (committed)\n+++ generated\n{}", diff(&committed, &generated)));
    }
    assert!(drifted.is_empty(), "{}\nRegenerate with: cargo run --bin openapi", drifted.join("\n"));
}

#[test]
fn documents_serve_the_calling_host_first() {
    for (file, doc) in order_system::openapi_documents() {
        let servers = doc.servers.expect("servers");
        assert_eq!(servers[0].url, "/", "{file}");
        assert_eq!(servers[1].url, "http://arch.homework", "{file}");
    }
}

/// Lines only in `a` (-) and only in `b` (+), in order: enough to see what
/// changed without a diff library.
fn diff(a: &str, b: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            i += 1;
            j += 1;
        } else if j < b.len() && !a[i..].contains(&b[j]) {
            out.push_str(&format!("+{}\n", b[j]));
            j += 1;
        } else if i < a.len() {
            out.push_str(&format!("-{}\n", a[i]));
            i += 1;
        } else {
            out.push_str(&format!("+{}\n", b[j]));
            j += 1;
        }
    }
    out
}
