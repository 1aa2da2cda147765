//! `index.html`: one page a person can open, with the summary and the charts.
//!
//! The charts are separate SVG files embedded with `<img>`, so the page works
//! from the file system without a server; the JSON is linked, not inlined.

/// The page for a run whose summary text is `summary` and whose charts are `charts`.
pub fn render(title: &str, summary: &str, charts: &[String]) -> String {
    let mut images = String::new();
    for chart in charts {
        images.push_str(&format!(
            "<figure><img src=\"{0}\" alt=\"{0}\"></figure>\n",
            escape(chart)
        ));
    }
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>{title}</title>\n\
         <style>body{{font-family:sans-serif;margin:2em;max-width:1000px}}\
         pre{{background:#f6f6f6;padding:1em;overflow-x:auto;font-size:12px}}\
         img{{max-width:100%;border:1px solid #ddd}}</style>\n</head><body>\n\
         <h1>{title}</h1>\n<p>Full configuration, machine and every figure: <a href=\"report.json\">report.json</a>.</p>\n\
         <pre>{summary}</pre>\n{images}</body></html>\n",
        title = escape(title),
        summary = escape(summary),
    )
}

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_embeds_charts_and_escapes_text() {
        // Proves every chart is embedded and summary text cannot inject markup.
        let page = render(
            "run <1>",
            "p50 < 1 ms & ok",
            &["latency.svg".into(), "throughput.svg".into()],
        );
        assert!(page.contains("<img src=\"latency.svg\""));
        assert!(page.contains("<img src=\"throughput.svg\""));
        assert!(page.contains("p50 &lt; 1 ms &amp; ok"));
        assert!(page.contains("<title>run &lt;1&gt;</title>"));
    }
}
