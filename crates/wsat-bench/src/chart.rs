//! The chart of the table: messages/s of each implementation as a ratio to raw TCP, one
//! group of bars per workload (SVG, plotters).

use std::path::Path;

use anyhow::anyhow;
use plotters::prelude::*;

use super::report::{ratio, Row, IMPLEMENTATIONS, RAW};
use super::workload::Workload;

/// One per implementation of [`super::report::IMPLEMENTATIONS`], in its order: each wsat
/// row's `+deflate` twin a lighter shade of it, the raw-tcp rows grey.
const COLORS: [RGBColor; 8] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xae, 0xc7, 0xe8),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0xc5, 0xb0, 0xd5),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0x7f, 0x7f, 0x7f),
    RGBColor(0xc7, 0xc7, 0xc7),
];

/// Writes the SVG chart of `rows` to `path`.
pub fn write_svg(rows: &[Row], implementations: &[String], title: &str, path: &Path) -> anyhow::Result<()> {
    let mut workloads: Vec<Workload> = Vec::new();
    for r in rows {
        if !workloads.contains(&r.workload) {
            workloads.push(r.workload);
        }
    }
    let n = implementations.len().max(1) as f64;
    let root = SVGBackend::new(path, (960, 540)).into_drawing_area();
    let err = |e: DrawingAreaErrorKind<_>| anyhow!("drawing the chart: {e:?}");
    root.fill(&WHITE).map_err(err)?;
    // A log scale: the batched ceiling can be ten times raw-tcp while the rest sit near 1.
    let ratios: Vec<f64> = rows
        .iter()
        .filter_map(|r| ratio(rows, r, RAW))
        .filter(|v| *v > 0.0)
        .collect();
    let top = ratios.iter().copied().fold(1.0f64, f64::max) * 1.3;
    let floor = ratios.iter().copied().fold(1.0f64, f64::min) / 1.5;
    let labels = workloads.clone();
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..workloads.len() as f64, (floor..top).log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(workloads.len() * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - x.floor() - 0.5).abs() < 1e-6 && i < labels.len() {
                labels[i].to_string()
            } else {
                String::new()
            }
        })
        .y_desc("messages/s ÷ raw-tcp (same run, log scale)")
        .draw()
        .map_err(err)?;
    for (ii, name) in implementations.iter().enumerate() {
        let known = IMPLEMENTATIONS.iter().position(|i| i == name);
        let color = COLORS[known.unwrap_or(ii) % COLORS.len()];
        let bars: Vec<_> = workloads
            .iter()
            .enumerate()
            .filter_map(|(wi, w)| {
                let row = rows.iter().find(|r| r.workload == *w && &r.implementation == name)?;
                let v = ratio(rows, row, RAW)?;
                let x0 = wi as f64 + 0.1 + 0.8 * ii as f64 / n;
                let x1 = x0 + 0.8 / n * 0.9;
                Some(Rectangle::new([(x0, floor), (x1, v)], color.filled()))
            })
            .collect();
        chart
            .draw_series(bars)
            .map_err(err)?
            .label(name.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}
