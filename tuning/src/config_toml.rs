//! Renders a recommendation as a commented TOML file the broker reads.
//!
//! The values come from serialising the broker's own `Config`, so the file can
//! only contain keys the broker knows; each key gets its reason as a comment
//! above it. A test parses the output back through `Config::from_toml_str`.

use std::fmt::Write;

use crate::recommend::Recommendation;

/// Sections first in the file, in the broker's struct order; any section the
/// broker adds later follows them, so no key the broker serialises is dropped.
const SECTIONS_FIRST: &[&str] = &["server", "runtime", "storage", "limits"];

/// The commented TOML; `header` lines become the opening comment.
pub fn render_toml(rec: &Recommendation, header: &[String]) -> String {
    let mut out = String::new();
    for line in header {
        let _ = writeln!(out, "# {line}");
    }
    let value = toml::Value::try_from(&rec.config).expect("the broker config always serialises");
    let table = value.as_table().expect("a config serialises to a table");
    let later = table
        .keys()
        .filter(|k| !SECTIONS_FIRST.contains(&k.as_str()))
        .map(String::as_str);
    for section in SECTIONS_FIRST.iter().copied().chain(later) {
        let Some(keys) = table.get(section).and_then(|v| v.as_table()) else {
            continue;
        };
        let _ = writeln!(out, "\n[{section}]");
        for (key, value) in keys {
            match rec.reason(&format!("{section}.{key}")) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host_probe::fixtures::{nvme_probe, virtio_probe};
    use crate::recommend::fixtures::{nvme_bench, virtio_bench};
    use crate::recommend::{recommend, Priority};
    use shoal_config::Config;

    /// The rendered file parses through the broker's own config loader back to the recommended config.
    #[test]
    fn rendered_toml_is_a_broker_config() {
        for (probe, bench) in [(nvme_probe(), nvme_bench()), (virtio_probe(), virtio_bench())] {
            for priority in [Priority::Durability, Priority::Latency] {
                let rec = recommend(&probe, Some(&bench), "/var/lib/shoal/data".into(), priority);
                let text = render_toml(&rec, &["header line".to_string()]);
                let parsed = Config::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
                assert_eq!(parsed, rec.config, "{text}");
                assert!(text.starts_with("# header line\n"));
            }
        }
    }

    /// Every key carries a comment: its reason, or that it is the broker default.
    #[test]
    fn every_key_is_commented() {
        let rec = recommend(
            &virtio_probe(),
            Some(&virtio_bench()),
            "/d".into(),
            Priority::Durability,
        );
        let text = render_toml(&rec, &[]);
        let lines: Vec<&str> = text.lines().collect();
        let mut keys = 0;
        for (i, line) in lines.iter().enumerate() {
            if line.contains(" = ") && !line.starts_with('#') {
                keys += 1;
                assert!(lines[i - 1].starts_with('#'), "no comment above {line}");
            }
        }
        let value = toml::Value::try_from(Config::default()).unwrap();
        let broker_keys: usize = value
            .as_table()
            .unwrap()
            .values()
            .map(|s| s.as_table().unwrap().len())
            .sum();
        assert_eq!(keys, broker_keys, "every key the broker serialises is written");
        assert!(text.contains("# broker default\nframe_bytes_max = 16777216"));
        assert!(
            text.lines().all(|l| l.len() <= COMMENT_WIDTH + 40),
            "comments are wrapped"
        );
    }
}
