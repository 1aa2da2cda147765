//! Suites: several workloads in one invocation, with one summary of the figures that matter.
//!
//! `--suite closing` runs, each against a fresh embedded broker and each with
//! its own baselines measured in the same run: the max-rate search with
//! `flush = always`, the same with `flush = never` (end-to-end latency is
//! measured at `measure_share`, 50%, of each sustainable rate), and the burst
//! scenario. Every member writes its full report into `<out>/<label>/`;
//! the suite adds `suite.txt`, `suite.json` and an `index.html` linking them.
//! Flags given on the command line apply to every member, except that a
//! member's own durability setting gives way only to an explicit `--flush`.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::BenchError;
use crate::report::html::escape;
use crate::report::model::{Durability, Ratio, RunReport};
use crate::report::summary::{count, mb_per_s, ns};
use crate::workload::{Flush, WorkloadLayer};

/// One workload of a suite.
#[derive(Clone, Copy, Debug)]
pub struct Member {
    pub label: &'static str,
    pub preset: &'static str,
    pub flush: Option<Flush>,
}

/// The suites shipped with the harness.
pub const SUITES: &[(&str, &[Member])] = &[(
    "closing",
    &[
        Member {
            label: "max-rate-flush-always",
            preset: "max-rate",
            flush: Some(Flush::Always),
        },
        Member {
            label: "max-rate-flush-never",
            preset: "max-rate",
            flush: Some(Flush::Never),
        },
        Member {
            label: "burst",
            preset: "burst",
            flush: None,
        },
    ],
)];

/// The members of the suite called `name`.
pub fn members(name: &str) -> Result<&'static [Member], BenchError> {
    SUITES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, m)| *m)
        .ok_or_else(|| {
            let known: Vec<&str> = SUITES.iter().map(|(n, _)| *n).collect();
            BenchError::InvalidWorkload(format!("unknown suite {name:?} (known: {})", known.join(", ")))
        })
}

/// The user's flags with the member's own settings filled in where the user set none.
pub fn member_flags(user: &WorkloadLayer, member: &Member) -> WorkloadLayer {
    let mut flags = user.clone();
    flags.flush = user.flush.or(member.flush);
    flags
}

/// The figures a suite member contributes to the suite summary.
#[derive(Clone, Debug, Serialize)]
pub struct MemberFigures {
    pub label: String,
    pub report_dir: PathBuf,
    pub sustainable_rate_per_s: Option<f64>,
    /// The search reached `search_rate_max_per_s` still sustainable: the true limit is higher.
    pub sustainable_rate_capped: Option<bool>,
    pub sustainable_bytes_per_s: Option<f64>,
    pub measured_rate_per_s: Option<f64>,
    pub end_to_end_p50_ns: Option<u64>,
    pub end_to_end_p99_ns: Option<u64>,
    pub end_to_end_p999_ns: Option<u64>,
    pub produce_ack_p99_ns: Option<u64>,
    pub durability: Durability,
    pub burst_peak_lag_records: Option<u64>,
    pub burst_peak_delay_ns: Option<u64>,
    pub burst_drain_ns: Option<u64>,
    pub delivery_ok: Option<bool>,
    /// Restart scenario: from the kill to the first ack after it, and the
    /// longest wait for an ack after it.
    pub restart_unavailable_ns: Option<u64>,
    pub restart_longest_wait_ns: Option<u64>,
    pub ratios: Vec<Ratio>,
}

impl MemberFigures {
    pub fn of(label: &str, report_dir: &Path, r: &RunReport) -> Self {
        let m = r.measured.as_ref();
        let burst = m.and_then(|m| m.burst.as_ref());
        let e2e = m.filter(|m| m.end_to_end.count > 0).map(|m| m.end_to_end);
        let rate = r.search.as_ref().map(|s| s.sustainable_rate_per_s);
        Self {
            label: label.to_string(),
            report_dir: report_dir.to_path_buf(),
            sustainable_rate_per_s: rate,
            sustainable_rate_capped: r.search.as_ref().map(|s| s.capped_by_rate_max),
            sustainable_bytes_per_s: rate.map(|x| x * r.workload.record_bytes as f64),
            measured_rate_per_s: m.map(|m| m.offered_rate_per_s),
            end_to_end_p50_ns: e2e.map(|l| l.p50_ns),
            end_to_end_p99_ns: e2e.map(|l| l.p99_ns),
            end_to_end_p999_ns: e2e.map(|l| l.p999_ns),
            produce_ack_p99_ns: m
                .filter(|m| m.ack_latency.count > 0)
                .map(|m| m.ack_latency.p99_ns),
            durability: r.durability.clone(),
            burst_peak_lag_records: burst.map(|b| b.figures.peak_lag_records),
            burst_peak_delay_ns: burst.map(|b| b.peak_end_to_end_ns),
            burst_drain_ns: burst.and_then(|b| b.figures.drain_ns),
            delivery_ok: m.and_then(|m| m.delivery.as_ref().map(|v| v.ok && m.drained)),
            restart_unavailable_ns: m
                .and_then(|m| m.restart.as_ref())
                .and_then(|rs| rs.unavailable_ns),
            restart_longest_wait_ns: m.and_then(|m| m.restart.as_ref()).map(|rs| rs.longest_wait_ns),
            ratios: r.ratios.clone(),
        }
    }
}

/// The replicated figures against the single-node ones of the same
/// invocation (`--cluster N`): sustainable produce rate, and produce→ack
/// and end-to-end p99 in each measured phase (at `measure_share` of each
/// run's own sustainable rate).
pub fn render_comparison(label: &str, single: &MemberFigures, replicated: &MemberFigures) -> String {
    let d = &replicated.durability;
    let header = format!(
        "{label} (replication factor {}, acks {:?}) against a single node (acks {:?}), flush {:?}, same invocation\n",
        d.replication_factor, d.acks, single.durability.acks, d.flush
    );
    header + &comparison_lines(single, replicated)
}

/// The TLS figures against the plaintext ones of the same invocation
/// (`--compare-tls`): the same figures as [`render_comparison`], TLS over
/// plaintext.
pub fn render_tls_comparison(plaintext: &MemberFigures, tls: &MemberFigures) -> String {
    let d = &tls.durability;
    let header = format!(
        "{} (TLS 1.3 on the native ports) against {} (plaintext), flush {:?}, acks {:?}, same invocation\n",
        tls.label, plaintext.label, d.flush, d.acks
    );
    header + &comparison_lines(plaintext, tls)
}

/// `other`'s sustainable rate, produce→ack p99 and end-to-end p99 next to
/// `base`'s, each with `other / base`.
fn comparison_lines(base: &MemberFigures, other: &MemberFigures) -> String {
    let mut out = String::new();
    match (base.sustainable_rate_per_s, other.sustainable_rate_per_s) {
        (Some(b), Some(o)) if b > 0.0 => {
            let _ = writeln!(
                out,
                "  max sustainable produce  {} rec/s vs {} rec/s: ratio {:.2}",
                count(o as u64),
                count(b as u64),
                o / b
            );
            // A capped rate is a floor, so the ratio says little.
            for f in [other, base] {
                if f.sustainable_rate_capped == Some(true) {
                    let _ = writeln!(
                        out,
                        "    ({} reached search_rate_max_per_s: its limit is higher)",
                        f.label
                    );
                }
            }
        }
        _ => out.push_str("  max sustainable produce  not searched (use a max-rate workload)\n"),
    }
    for (what, b, o) in [
        (
            "produce->ack p99",
            base.produce_ack_p99_ns,
            other.produce_ack_p99_ns,
        ),
        ("end-to-end p99", base.end_to_end_p99_ns, other.end_to_end_p99_ns),
        (
            "restart: first ack after the kill",
            base.restart_unavailable_ns,
            other.restart_unavailable_ns,
        ),
        (
            "restart: longest wait for an ack",
            base.restart_longest_wait_ns,
            other.restart_longest_wait_ns,
        ),
    ] {
        if let (Some(b), Some(o)) = (b, o) {
            let _ = writeln!(
                out,
                "  {what:<16}  {} vs {}: {:.2}x",
                ns(o),
                ns(b),
                o as f64 / b.max(1) as f64
            );
        }
    }
    out
}

/// The suite's summary table.
pub fn render(name: &str, figures: &[MemberFigures]) -> String {
    let mut out = format!(
        "shoal-bench suite {name:?}: {} runs, each with its own baselines\n",
        figures.len()
    );
    for f in figures {
        let _ = writeln!(out, "\n{} ({})", f.label, f.report_dir.display());
        if let (Some(rate), Some(bytes)) = (f.sustainable_rate_per_s, f.sustainable_bytes_per_s) {
            let _ = writeln!(
                out,
                "  max sustainable produce  {} rec/s = {}",
                count(rate as u64),
                mb_per_s(bytes)
            );
        }
        if let (Some(p50), Some(p99), Some(p999)) =
            (f.end_to_end_p50_ns, f.end_to_end_p99_ns, f.end_to_end_p999_ns)
        {
            let at = f
                .measured_rate_per_s
                .map_or(String::new(), |r| format!(" at {} rec/s", count(r as u64)));
            let _ = writeln!(
                out,
                "  end-to-end{at}  p50 {}  p99 {}  p99.9 {}",
                ns(p50),
                ns(p99),
                ns(p999)
            );
        }
        if let Some(peak) = f.burst_peak_lag_records {
            let drain = f.burst_drain_ns.map_or("did not drain".to_string(), ns);
            let delay = f.burst_peak_delay_ns.map_or("-".to_string(), ns);
            let _ = writeln!(
                out,
                "  burst  peak lag {} records, peak delay {delay}, drain time {drain}",
                count(peak)
            );
        }
        let verdict = match f.delivery_ok {
            Some(true) => "every acked record consumed",
            Some(false) => "DELIVERY CHECK FAILED",
            None => "not checked",
        };
        let _ = writeln!(out, "  delivery: {verdict}");
        for x in &f.ratios {
            let fmt = |v: f64| if x.unit == "ns" { ns(v as u64) } else { mb_per_s(v) };
            let _ = writeln!(
                out,
                "    {:<26} {:>12}  / {:<24} {:>12} = {:.3}",
                x.figure,
                fmt(x.value),
                x.baseline,
                fmt(x.baseline_value),
                x.ratio
            );
        }
    }
    out
}

/// Writes `suite.txt`, `suite.json` and `index.html` into `out`.
pub fn write(out: &Path, name: &str, figures: &[MemberFigures]) -> Result<(), BenchError> {
    let put = |file: &str, text: &str| {
        let path = out.join(file);
        std::fs::write(&path, text).map_err(|e| BenchError::io(format!("write {}", path.display()), e))
    };
    let text = render(name, figures);
    put("suite.txt", &text)?;
    let json = serde_json::to_string_pretty(figures).map_err(|e| BenchError::Report {
        path: out.join("suite.json"),
        message: e.to_string(),
    })?;
    put("suite.json", &json)?;
    let links: String = figures
        .iter()
        .map(|f| format!("<li><a href=\"{0}/index.html\">{0}</a></li>\n", escape(&f.label)))
        .collect();
    let page = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>shoal-bench suite {0}</title>\n\
         <style>body{{font-family:sans-serif;margin:2em}}pre{{background:#f6f6f6;padding:1em;font-size:12px}}</style>\n\
         </head><body><h1>shoal-bench suite {0}</h1>\n<ul>\n{links}</ul>\n<pre>{1}</pre>\n</body></html>\n",
        escape(name),
        escape(&text)
    );
    put("index.html", &page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_settings_yield_to_explicit_flags_only() {
        // Proves a member's flush applies unless the user passed --flush, and other flags pass through.
        let closing = members("closing").unwrap();
        let user = WorkloadLayer {
            search_trial_s: Some(3.0),
            ..Default::default()
        };
        let never = member_flags(&user, &closing[1]);
        assert_eq!(never.flush, Some(Flush::Never));
        assert_eq!(never.search_trial_s, Some(3.0));
        let forced = WorkloadLayer {
            flush: Some(Flush::Interval),
            ..Default::default()
        };
        assert_eq!(member_flags(&forced, &closing[0]).flush, Some(Flush::Interval));
        assert!(members("nope").is_err());
    }

    fn figures(label: &str, rate: f64, capped: bool, ack_p99_ns: u64) -> MemberFigures {
        let w = crate::workload::Workload::resolve(
            crate::workload::WorkloadSource::Preset("max-rate"),
            &WorkloadLayer::default(),
        )
        .unwrap();
        MemberFigures {
            label: label.into(),
            report_dir: PathBuf::from(label),
            sustainable_rate_per_s: Some(rate),
            sustainable_rate_capped: Some(capped),
            sustainable_bytes_per_s: Some(rate * 1024.0),
            measured_rate_per_s: Some(rate / 2.0),
            end_to_end_p50_ns: None,
            end_to_end_p99_ns: None,
            end_to_end_p999_ns: None,
            produce_ack_p99_ns: Some(ack_p99_ns),
            durability: Durability::of(&w),
            burst_peak_lag_records: None,
            burst_peak_delay_ns: None,
            burst_drain_ns: None,
            delivery_ok: Some(true),
            restart_unavailable_ns: None,
            restart_longest_wait_ns: None,
            ratios: Vec::new(),
        }
    }

    #[test]
    fn tls_comparison_gives_tls_over_plaintext() {
        // Proves the ratio is TLS / plaintext (not the inverse) and a capped search is called out.
        let plain = figures("plaintext", 500_000.0, false, 7_000_000);
        let tls = figures("tls", 400_000.0, false, 8_400_000);
        let text = render_tls_comparison(&plain, &tls);
        assert!(text.starts_with("tls (TLS 1.3"), "{text}");
        assert!(text.contains("ratio 0.80"), "{text}");
        assert!(text.contains("produce->ack p99"), "{text}");
        assert!(text.contains("1.20x"), "{text}");
        assert!(!text.contains("its limit is higher"), "{text}");
        let capped = render_tls_comparison(&figures("plaintext", 1000.0, true, 1), &tls);
        assert!(
            capped.contains("plaintext reached search_rate_max_per_s"),
            "{capped}"
        );
    }
}
