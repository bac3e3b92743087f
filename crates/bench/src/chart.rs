//! The overhead suite's chart: P50 and P99 latency against offered load for every target, as
//! SVG (text is left to the viewer's fonts, so no font files are needed to draw it).

use std::path::Path;

use plotters::prelude::*;

/// One target's steps: (offered rate, P50 ms, P99 ms).
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64, f64)>,
}

/// Draws every series on log-log axes, with the latency bound as a dotted line.
pub fn latency_vs_load(path: &Path, series: &[Series], bound_ms: f64) -> anyhow::Result<()> {
    // The chart is drawn before the report is written, so its folder may not exist yet.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let rates: Vec<f64> = series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).collect();
    let latencies: Vec<f64> = series
        .iter()
        .flat_map(|s| s.points.iter().flat_map(|p| [p.1, p.2]))
        .filter(|v| finite(*v))
        .collect();
    let x_max = rates.iter().copied().fold(100.0, f64::max) * 1.3;
    let x_min = rates.iter().copied().fold(x_max, f64::min) / 1.3;
    let y_max = latencies.iter().copied().fold(bound_ms, f64::max) * 1.5;
    let y_min = latencies.iter().copied().fold(bound_ms, f64::min) / 1.5;

    let root = SVGBackend::new(path, (960, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(draw)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Latency against offered load (instant Bedrock emulator)", ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d((x_min..x_max).log_scale(), (y_min..y_max).log_scale())
        .map_err(draw)?;
    chart
        .configure_mesh()
        .x_desc("offered load, requests/s")
        .y_desc("latency, ms")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| if *y < 1.0 { format!("{y:.2}") } else { format!("{y:.0}") })
        .draw()
        .map_err(draw)?;
    let bound = [(x_min, bound_ms), (x_max, bound_ms)];
    chart
        .draw_series(DashedLineSeries::new(bound, 2, 4, BLACK.stroke_width(1)))
        .map_err(draw)?
        .label(format!("{bound_ms:.0} ms bound"))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], BLACK));
    for (i, s) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let p50: Vec<(f64, f64)> =
            s.points.iter().filter(|p| finite(p.1)).map(|p| (p.0, p.1)).collect();
        let p99: Vec<(f64, f64)> =
            s.points.iter().filter(|p| finite(p.2)).map(|p| (p.0, p.2)).collect();
        chart
            .draw_series(LineSeries::new(p50.iter().copied(), color.stroke_width(2)).point_size(3))
            .map_err(draw)?
            .label(format!("{} P50", s.name))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(2))
            });
        chart
            .draw_series(DashedLineSeries::new(p99.iter().copied(), 8, 5, color.stroke_width(2)))
            .map_err(draw)?
            .label(format!("{} P99", s.name))
            .legend(move |(x, y)| {
                PathElement::new(
                    vec![(x, y), (x + 8, y), (x + 13, y), (x + 21, y)],
                    color.stroke_width(1),
                )
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(draw)?;
    root.present().map_err(draw)?;
    Ok(())
}

/// A latency that can stand on a log axis.
fn finite(v: f64) -> bool {
    v.is_finite() && v > 0.0
}

fn draw<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing the chart: {e:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_an_svg_with_every_series() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("overhead.svg");
        let series = vec![
            Series {
                name: "fast".into(),
                points: vec![(25.0, 0.3, 0.9), (1000.0, 0.4, 2.0), (4000.0, 0.9, 30.0)],
            },
            Series {
                name: "slow".into(),
                points: vec![(25.0, 15.0, 40.0), (100.0, 900.0, f64::NAN)],
            },
        ];
        latency_vs_load(&path, &series, 50.0).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(
            svg.starts_with("<svg")
                && svg.contains("fast P50")
                && svg.contains("slow P99")
                && svg.contains("50 ms bound"),
            "{}",
            &svg[..svg.len().min(500)]
        );
    }
}
