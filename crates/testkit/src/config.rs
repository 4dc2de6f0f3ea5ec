//! Checks of a daemon's documented config file against its config type.

/// The `section.key` paths that `config` (serialised as TOML) has and `rendered` (the
/// documented file the daemon writes) does not set. Fields with a serde default still read back
/// when the file omits them, so a round trip alone does not show that a new field made it into
/// the documented file: this does.
pub fn keys_missing_from_rendered<T: serde::Serialize>(config: &T, rendered: &str) -> Vec<String> {
    let full = toml::Value::try_from(config).expect("the config serialises as TOML");
    let written: toml::Value = toml::from_str(rendered).expect("the rendered file is TOML");
    let mut missing = Vec::new();
    walk(&full, &written, String::new(), &mut missing);
    missing
}

fn walk(full: &toml::Value, written: &toml::Value, path: String, missing: &mut Vec<String>) {
    let toml::Value::Table(table) = full else {
        return;
    };
    for (key, value) in table {
        let here = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        match written.get(key) {
            None => missing.push(here),
            Some(inner) => walk(value, inner, here, missing),
        }
    }
}
