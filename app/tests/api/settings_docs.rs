//! Every setting the service reads is documented: in README's configuration table and in
//! `.env.example`.

const CONFIG: &str = include_str!("../../src/config.rs");
const README: &str = include_str!("../../../README.md");
const ENV_EXAMPLE: &str = include_str!("../../../.env.example");

/// Every `"OPONN_..."` string literal of `config.rs`.
fn settings_read() -> Vec<&'static str> {
    let mut names: Vec<&str> = CONFIG
        .split('"')
        .filter(|piece| {
            piece.starts_with("OPONN_")
                && piece
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

#[test]
fn every_setting_is_in_the_readme_table_and_the_env_example() {
    let names = settings_read();
    assert!(names.len() > 30, "found only {names:?}");
    let table: Vec<&str> = README
        .lines()
        .filter(|line| line.starts_with("| `"))
        .collect();
    let undocumented: Vec<&&str> = names
        .iter()
        .filter(|name| !table.iter().any(|row| documents(row, name)))
        .collect();
    assert!(
        undocumented.is_empty(),
        "not in README's table: {undocumented:?}"
    );
    let missing: Vec<&&str> = names
        .iter()
        .filter(|name| {
            // An optional setting with no default is there commented out.
            !ENV_EXAMPLE.lines().any(|line| {
                let line = line.trim_start_matches("# ");
                line.starts_with(&format!("{name}="))
            })
        })
        .collect();
    assert!(missing.is_empty(), "not in .env.example: {missing:?}");
}

/// Whether a table row names `name`: as `` `NAME` ``, or as `` `PREFIX_A` / `_B` `` (one row
/// for two settings that share a prefix).
fn documents(row: &str, name: &str) -> bool {
    row.contains(&format!("`{name}`"))
        || name.match_indices('_').any(|(at, _)| {
            let (prefix, suffix) = name.split_at(at);
            row.contains(&format!("`{suffix}`")) && row.contains(&format!("`{prefix}_"))
        })
}
