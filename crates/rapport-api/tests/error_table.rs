//! `docs/api-errors.md` lists exactly the codes of [`rapport_api::Code`], each with the
//! status the server answers it with.

use rapport_api::Code;
use std::collections::BTreeMap;

#[test]
fn the_documented_error_table_is_the_code_table() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/api-errors.md");
    let doc = std::fs::read_to_string(path).unwrap();
    let mut documented = BTreeMap::new();
    for line in doc.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // `| 400 | `invalid_json` | meaning |`
        if cells.len() < 4 {
            continue;
        }
        let (Ok(status), Some(code)) = (
            cells[1].parse::<u16>(),
            cells[2].strip_prefix('`').and_then(|c| c.strip_suffix('`')),
        ) else {
            continue;
        };
        assert!(
            documented.insert(code.to_owned(), status).is_none(),
            "{code} is documented twice"
        );
    }
    let table: BTreeMap<String, u16> = Code::ALL
        .iter()
        .map(|c| (c.as_str().to_owned(), c.status()))
        .collect();
    assert_eq!(
        documented, table,
        "docs/api-errors.md and rapport_api::Code differ"
    );
}
