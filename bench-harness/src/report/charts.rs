//! SVG charts of a measured phase: latency over time, throughput over time, backlog over time.
//!
//! Latency is drawn on a log scale in microseconds (a tail 1000x the median
//! must stay visible); throughput and backlog on linear scales. The x axis is
//! seconds since the run's epoch, so the warm-up, a burst or a restart line up
//! across the three charts.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::BenchError;
use crate::report::model::PhaseResult;
use crate::timeseries::SeriesPoint;

const SIZE: (u32, u32) = (960, 440);
const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// A named line of `(x, y)` points.
pub struct Line {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// Writes `latency.svg`, `throughput.svg` and `backlog.svg` into `dir`;
/// answers the file names written.
pub fn write(dir: &Path, m: &PhaseResult) -> Result<Vec<String>, BenchError> {
    let mut written = Vec::new();
    let latency = latency_lines(m);
    if latency.iter().any(|l| !l.points.is_empty()) {
        let title = "Latency per second (from intended send time)";
        chart(
            &dir.join("latency.svg"),
            title,
            "latency (log scale)",
            &latency,
            true,
        )?;
        written.push("latency.svg".to_string());
    }
    let offered = m
        .offered_series
        .iter()
        .enumerate()
        .map(|(s, n)| (s as f64 + 0.5, *n as f64))
        .collect();
    let throughput = vec![
        Line {
            name: "offered rec/s (schedule)".into(),
            points: offered,
        },
        per_second("produced (acked) rec/s", &m.produce_series, |p| p.records as f64),
        per_second("consumed rec/s", &m.consume_series, |p| p.records as f64),
    ];
    chart(
        &dir.join("throughput.svg"),
        "Throughput per second",
        "records/s",
        &throughput,
        false,
    )?;
    written.push("throughput.svg".to_string());
    let backlog = vec![
        gauge("produce backlog (due, not acked)", &m.backlog.samples),
        gauge("consumer lag (acked, not consumed)", &m.consumer_lag.samples),
    ];
    if backlog.iter().any(|l| !l.points.is_empty()) {
        chart(
            &dir.join("backlog.svg"),
            "Backlog over time",
            "records",
            &backlog,
            false,
        )?;
        written.push("backlog.svg".to_string());
    }
    Ok(written)
}

/// Latency axis values are µs: shown as µs, ms or s; other axes as plain counts.
fn axis_label(v: f64, latency: bool) -> String {
    if latency {
        return crate::report::summary::ns((v * 1e3).round() as u64);
    }
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

fn latency_lines(m: &PhaseResult) -> Vec<Line> {
    let us = |v: u64| v as f64 / 1e3;
    let mut lines = Vec::new();
    if m.end_to_end.count > 0 {
        lines.push(per_second("end-to-end p50", &m.consume_series, |p| us(p.p50_ns)));
        lines.push(per_second("end-to-end p99", &m.consume_series, |p| us(p.p99_ns)));
        lines.push(per_second("end-to-end max", &m.consume_series, |p| us(p.max_ns)));
    }
    if m.ack_latency.count > 0 {
        lines.push(per_second(
            "produce->ack p50",
            &m.produce_series,
            |p| us(p.p50_ns),
        ));
        lines.push(per_second(
            "produce->ack p99",
            &m.produce_series,
            |p| us(p.p99_ns),
        ));
        lines.push(per_second("produce->ack p99.9", &m.produce_series, |p| {
            us(p.p999_ns)
        }));
    }
    lines
}

/// A line with one point per second that had completions, plotted at the second's middle.
fn per_second(name: &str, points: &[SeriesPoint], f: impl Fn(&SeriesPoint) -> f64) -> Line {
    let points = points
        .iter()
        .filter(|p| p.records > 0)
        .map(|p| (p.second as f64 + 0.5, f(p)))
        .collect();
    Line {
        name: name.into(),
        points,
    }
}

fn gauge(name: &str, samples: &[(u64, u64)]) -> Line {
    Line {
        name: name.into(),
        points: samples
            .iter()
            .map(|(t, v)| (*t as f64 / 1e9, *v as f64))
            .collect(),
    }
}

/// Draws `lines` into an SVG file at `path`.
pub fn chart(path: &Path, title: &str, y_desc: &str, lines: &[Line], log_y: bool) -> Result<(), BenchError> {
    let fail = |e: &dyn std::fmt::Display| BenchError::Report {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let all = lines.iter().flat_map(|l| l.points.iter());
    let x_max = all.clone().map(|p| p.0).fold(1.0, f64::max).ceil();
    let y_max = all.clone().map(|p| p.1).fold(0.0, f64::max);
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    if log_y {
        let y_min = all
            .map(|p| p.1)
            .filter(|v| *v > 0.0)
            .fold(f64::INFINITY, f64::min);
        let y_min = if y_min.is_finite() { y_min / 2.0 } else { 1.0 };
        let range = (y_min..(y_max * 2.0).max(y_min * 10.0)).log_scale();
        draw(&root, title, y_desc, lines, true, 0.0..x_max, range).map_err(|e| fail(&e))?;
    } else {
        draw(
            &root,
            title,
            y_desc,
            lines,
            false,
            0.0..x_max,
            0.0..(y_max * 1.1).max(1.0),
        )
        .map_err(|e| fail(&e))?;
    }
    root.present().map_err(|e| fail(&e))
}

fn draw<'a, Y>(
    root: &DrawingArea<SVGBackend<'a>, Shift>,
    title: &str,
    y_desc: &str,
    lines: &[Line],
    log_y: bool,
    x: std::ops::Range<f64>,
    y: Y,
) -> Result<(), Box<dyn std::error::Error + 'a>>
where
    Y: plotters::coord::ranged1d::AsRangedCoord<Value = f64>,
    Y::CoordDescType: plotters::coord::ranged1d::ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(x, y)?;
    chart
        .configure_mesh()
        .x_desc("seconds since start")
        .y_desc(y_desc)
        .y_label_formatter(&|v| axis_label(*v, log_y))
        .draw()?;
    for (i, line) in lines.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        chart
            .draw_series(LineSeries::new(
                line.points.iter().copied(),
                color.stroke_width(2),
            ))?
            .label(line.name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}
