//! The one stdout writer: every line the plugin prints goes through [`stdout`] (or
//! [`line`]); `-o json|yaml` printing and simple tables.

use serde::Serialize;

/// `-o` for objects: JSON or YAML.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
}

/// A multi-document YAML stream (`---` before every document).
pub fn yaml_stream(docs: &[serde_json::Value]) -> String {
    let mut out = String::new();
    for d in docs {
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(d).expect("a JSON value serializes to YAML"));
    }
    out
}

/// A `{"apiVersion":"v1","kind":"List","items":[…]}` document.
pub fn json_list(items: Vec<serde_json::Value>) -> String {
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
    serde_json::to_string_pretty(&list).expect("JSON serializes")
}

/// Writes `text` to stdout. A closed pipe (`| head`) ends the output quietly
/// instead of panicking as `print!` would.
pub fn stdout(text: &str) {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

/// Writes one line (`text` and a newline) to stdout through [`stdout`].
pub fn line(text: impl std::fmt::Display) {
    stdout(&format!("{text}\n"));
}

/// Prints `value` as JSON or YAML on stdout.
pub fn print<T: Serialize>(value: &T, format: Format) {
    match format {
        Format::Json => stdout(&(serde_json::to_string_pretty(value).expect("JSON serializes") + "\n")),
        Format::Yaml => stdout(&serde_yaml_ng::to_string(value).expect("YAML serializes")),
    }
}

/// Renders rows as a left-aligned table with two spaces between columns.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn table_aligns() {
        let t =
            super::table(&["NAME", "READY"], &[vec!["a-long".into(), "1/1".into()], vec!["b".into(), "0/1".into()]]);
        assert_eq!(t, "NAME    READY\na-long  1/1\nb       0/1\n");
    }
}
