//! Renders a recommendation as a commented TOML file the broker reads.
//!
//! The values come from serialising the broker's own `Config`, so the file can
//! only contain keys the broker knows; each key gets its reason as a comment
//! above it. A test parses the output back through `Config::from_toml_str`.

use std::fmt::Write;

use crate::recommend::Recommendation;

/// Section order in the file: the broker's struct order.
const SECTIONS: &[&str] = &["server", "runtime", "storage", "limits"];

/// The commented TOML; `header` lines become the opening comment.
pub fn render_toml(rec: &Recommendation, header: &[String]) -> String {
    let mut out = String::new();
    for line in header {
        let _ = writeln!(out, "# {line}");
    }
    let value = toml::Value::try_from(&rec.config).expect("the broker config always serialises");
    let table = value.as_table().expect("a config serialises to a table");
    for &section in SECTIONS {
        let Some(keys) = table.get(section).and_then(|v| v.as_table()) else { continue };
        let _ = writeln!(out, "\n[{section}]");
        for (key, value) in keys {
            let full = format!("{section}.{key}");
            match rec.reason(&full) {
                Some(reason) => wrap_comment(&mut out, reason),
                None => {
                    let _ = writeln!(out, "# broker default");
                }
            }
            let _ = writeln!(out, "{key} = {value}");
        }
    }
    out
}

/// Comment width, so the file reads in a terminal.
const COMMENT_WIDTH: usize = 96;

fn wrap_comment(out: &mut String, text: &str) {
    let mut line = String::from("#");
    for word in text.split_whitespace() {
        if line.len() + 1 + word.len() > COMMENT_WIDTH && line.len() > 1 {
            let _ = writeln!(out, "{line}");
            line = String::from("#");
        }
        line.push(' ');
        line.push_str(word);
    }
    let _ = writeln!(out, "{line}");
}
