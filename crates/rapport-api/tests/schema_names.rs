//! OpenAPI names a schema after its Rust type, and two types of one name in different
//! modules silently become one schema (the last one registered wins), so every type the
//! document describes must have a name of its own.

use std::collections::HashMap;
use std::path::Path;

fn described_types(dir: &Path, out: &mut HashMap<String, Vec<String>>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            described_types(&path, out);
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let mut derives_schema = false;
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with("#[") && line.contains("ToSchema") {
                derives_schema = true;
            } else if derives_schema
                && let Some(rest) = ["pub struct ", "pub enum "]
                    .iter()
                    .find_map(|k| line.strip_prefix(k))
            {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                // A generic type's schemas are named with their parameters (`Page_Member`).
                if !rest[name.len()..].starts_with('<') {
                    out.entry(name)
                        .or_default()
                        .push(path.display().to_string());
                }
                derives_schema = false;
            } else if !line.starts_with("#[") && !line.starts_with("///") && !line.is_empty() {
                derives_schema = false;
            }
        }
    }
}

#[test]
fn every_described_type_has_a_name_of_its_own() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut names = HashMap::new();
    described_types(&root.join("src"), &mut names);
    described_types(&root.join("../rapport-destinations/src"), &mut names);
    assert!(names.len() > 50, "{} described types found", names.len());
    let clashes: Vec<_> = names.iter().filter(|(_, at)| at.len() > 1).collect();
    assert!(clashes.is_empty(), "schema names used twice: {clashes:?}");
}
