//! The run's timeline as an SVG: completed operations per second above, p50/p99 latency below,
//! the warm-up shaded and the end of the measured window marked.
//!
//! Drawn with plotters' SVG backend and no font library: text goes out as `<text>` elements
//! that the viewer lays out, so nothing beyond Rust crates is needed to build it.

use std::path::Path;

use plotters::prelude::*;

use crate::report::{Report, Sample};

const SIZE: (u32, u32) = (1000, 700);
const RATE_COLOR: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
const P50_COLOR: RGBColor = RGBColor(0x2c, 0xa0, 0x2c);
const P99_COLOR: RGBColor = RGBColor(0xd6, 0x27, 0x28);
const WARMUP_COLOR: RGBColor = RGBColor(0x99, 0x99, 0x99);
const END_COLOR: RGBColor = RGBColor(0x55, 0x55, 0x55);

/// Writes the timeline of `report` to `path` as an SVG.
pub fn write_svg(report: &Report, path: &Path) -> anyhow::Result<()> {
    draw(report, path).map_err(|e| anyhow::anyhow!("cannot draw {}: {e}", path.display()))
}

/// The x position of a one-second sample: the middle of its second.
fn x_of(s: &Sample) -> f64 {
    s.second as f64 + 0.5
}

/// A y range from 0 with some headroom above `max` (and something to show when all is 0).
fn y_range(max: f64) -> std::ops::Range<f64> {
    let top = if max.is_finite() && max > 0.0 {
        max * 1.15
    } else {
        1.0
    };
    0.0..top
}

fn title(report: &Report) -> String {
    let load = match report.offered_rate {
        Some(rate) => format!("open loop {rate:.0}/s"),
        None => "closed loop".to_string(),
    };
    format!(
        "{} → {}  ({} peers, {load}; {:.0} ops/s measured)",
        report.scenario, report.target, report.peers, report.rate
    )
}

fn draw(report: &Report, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(&title(report), ("sans-serif", 22))?;
    let panels = root.split_evenly((2, 1));

    let measured_end = report.warmup_secs + report.duration_secs;
    // Seconds that start after the measured window hold only the last answers trickling in
    // (a partial second that would read as a collapse): left out.
    let timeline: Vec<&Sample> = report
        .timeline
        .iter()
        .filter(|s| (s.second as f64) < measured_end)
        .collect();
    let x_end = measured_end.ceil().max(1.0);
    let rate_max = timeline.iter().map(|s| s.rate as f64).fold(0.0, f64::max);
    // Seconds with no completions have no percentiles: left out of the latency lines.
    let answered = || timeline.iter().copied().filter(|s| s.rate > 0);
    let latency_max = answered()
        .map(|s| s.p99_ms.max(s.p50_ms))
        .fold(0.0, f64::max);

    let mut rate_chart = ChartBuilder::on(&panels[0])
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_end, y_range(rate_max))?;
    rate_chart
        .configure_mesh()
        .x_desc("seconds since the load started")
        .y_desc("completed ops/s")
        .x_label_formatter(&seconds_label)
        .y_label_formatter(&|y| format!("{y:.0}"))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    let top = rate_chart.y_range().end;
    mark_window(&mut rate_chart, report.warmup_secs, measured_end, top)?;
    rate_chart
        .draw_series(LineSeries::new(
            timeline.iter().map(|s| (x_of(s), s.rate as f64)),
            RATE_COLOR.stroke_width(2),
        ))?
        .label("completed ops/s")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], RATE_COLOR.stroke_width(2)));
    rate_chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()?;

    // Enough decimals to tell the labels apart, and no more.
    let decimals = match latency_max {
        m if m >= 20.0 => 0,
        m if m >= 2.0 => 1,
        _ => 2,
    };
    let mut latency_chart = ChartBuilder::on(&panels[1])
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_end, y_range(latency_max))?;
    latency_chart
        .configure_mesh()
        .x_desc("seconds since the load started")
        .y_desc("latency (ms)")
        .x_label_formatter(&seconds_label)
        .y_label_formatter(&|y| format!("{y:.0$}", decimals))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    let top = latency_chart.y_range().end;
    mark_window(&mut latency_chart, report.warmup_secs, measured_end, top)?;
    for (name, color, value) in [
        (
            "p99",
            P99_COLOR,
            (|s: &Sample| s.p99_ms) as fn(&Sample) -> f64,
        ),
        ("p50", P50_COLOR, |s: &Sample| s.p50_ms),
    ] {
        latency_chart
            .draw_series(LineSeries::new(
                answered().map(|s| (x_of(s), value(s))),
                color.stroke_width(2),
            ))?
            .label(name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    latency_chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()?;

    root.present()?;
    Ok(())
}

/// Whole seconds without decimals, fractions with one.
fn seconds_label(x: &f64) -> String {
    if (x - x.round()).abs() < 1e-6 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

type Chart<'a> = ChartContext<
    'a,
    SVGBackend<'a>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// Shades the warm-up `[0, warmup)` and draws a dashed line where the measured window ends.
fn mark_window(
    chart: &mut Chart<'_>,
    warmup: f64,
    measured_end: f64,
    top: f64,
) -> Result<(), Box<dyn std::error::Error>> {
    if warmup > 0.0 {
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(0.0, 0.0), (warmup, top)],
                WARMUP_COLOR.mix(0.18).filled(),
            )))?
            .label("warm-up")
            .legend(|(x, y)| {
                Rectangle::new(
                    [(x, y - 5), (x + 20, y + 5)],
                    WARMUP_COLOR.mix(0.3).filled(),
                )
            });
        chart.draw_series(std::iter::once(Text::new(
            "warm-up",
            (warmup / 2.0, top * 0.97),
            ("sans-serif", 13).into_font().color(&END_COLOR).pos(
                plotters::style::text_anchor::Pos::new(
                    plotters::style::text_anchor::HPos::Center,
                    plotters::style::text_anchor::VPos::Top,
                ),
            ),
        )))?;
    }
    // The dashes of the end-of-measurement line, as short segments.
    let dash = top / 40.0;
    chart.draw_series((0..40).step_by(2).map(|i| {
        let y0 = i as f64 * dash;
        PathElement::new(
            [(measured_end, y0), (measured_end, y0 + dash)],
            END_COLOR.stroke_width(1),
        )
    }))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Percentiles;
    use std::collections::BTreeMap;

    fn report() -> Report {
        let timeline = (0..8)
            .map(|second| Sample {
                second,
                rate: if second == 5 { 0 } else { 1000 + 50 * second },
                p50_ms: 0.2 + second as f64 * 0.01,
                p99_ms: 1.5 + second as f64 * 0.1,
            })
            .collect();
        Report {
            scenario: "dht".into(),
            target: "127.0.0.1:49737".into(),
            peers: 64,
            offered_rate: None,
            warmup_secs: 2.0,
            duration_secs: 5.0,
            sent: 5000,
            completed: 4990,
            rate: 998.0,
            lost: 10,
            errors: 0,
            loss_ratio: 0.002,
            latency_ms: Percentiles::default(),
            notes: BTreeMap::new(),
            timeline,
        }
    }

    #[test]
    fn writes_an_svg_with_both_panels() {
        let dir = std::env::temp_dir().join(format!("setowire-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("run.svg");
        write_svg(&report(), &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
        assert!(svg.trim_end().ends_with("</svg>"));
        for text in [
            "completed ops/s",
            "p50",
            "p99",
            "warm-up",
            "dht → 127.0.0.1:49737",
        ] {
            assert!(svg.contains(text), "no {text:?} in the SVG");
        }
        // One polyline per series: the rate, p99 and p50.
        assert!(svg.matches("<polyline").count() >= 3, "{svg}");
    }

    #[test]
    fn an_empty_report_still_draws() {
        let mut r = report();
        r.timeline.clear();
        let path =
            std::env::temp_dir().join(format!("setowire-plot-empty-{}.svg", std::process::id()));
        write_svg(&r, &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert!(svg.contains("</svg>"));
    }
}
