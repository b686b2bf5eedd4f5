//! Writes the OpenAPI documents generated from the code to `openapi/`:
//! `cargo run --bin openapi` (or `-- DIR` for another folder), and the
//! problem catalogue to `docs/problems.md`.

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let dir = std::env::args().nth(1).map(PathBuf::from).unwrap_or_else(|| PathBuf::from("openapi"));
    std::fs::create_dir_all(&dir)?;
    for (file, doc) in order_system::openapi_documents() {
        let path = dir.join(file);
        std::fs::write(&path, order_system::to_yaml(&doc))?;
        println!("wrote {}", path.display());
    }
    let catalogue = std::path::Path::new("docs/problems.md");
    std::fs::write(catalogue, order_system::problem_catalogue_page())?;
    println!("wrote {}", catalogue.display());
    Ok(())
}
