//! The page's charts, drawn by plotters into SVG strings. Every chart takes
//! aggregated figures (shares, rates, a handful of levels or periods), so its
//! size does not grow with the number of customers.
//!
//! Text is only measured approximately (plotters without its font feature), as
//! the browser lays it out; labels are kept short and left room.

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::ReportError;

type Result<T> = std::result::Result<T, ReportError>;

pub const BLUE: RGBColor = RGBColor(31, 119, 180);
pub const ORANGE: RGBColor = RGBColor(230, 120, 20);
pub const GREEN: RGBColor = RGBColor(44, 150, 44);
pub const RED: RGBColor = RGBColor(200, 40, 40);
const GREY: RGBColor = RGBColor(150, 150, 150);
const INK: RGBColor = RGBColor(40, 40, 40);

const SIZE: (u32, u32) = (640, 320);
const FONT: &str = "sans-serif";

/// One named series of a chart, a value per category or period.
pub struct Series<'a> {
    pub name: &'a str,
    pub color: RGBColor,
    pub values: Vec<f64>,
}

/// One named series of rates with their 95 % intervals: (low, rate, high).
pub struct Intervals<'a> {
    pub name: &'a str,
    pub color: RGBColor,
    pub values: Vec<(f64, f64, f64)>,
}

fn fail<E: std::fmt::Display>(chart: &str) -> impl FnOnce(E) -> ReportError {
    move |e| ReportError::Chart {
        chart: chart.to_string(),
        message: e.to_string(),
    }
}

/// A share as a percentage with as many decimals as the axis needs to tell its
/// ticks apart.
fn percent_label(span: f64) -> impl Fn(&f64) -> String {
    let decimals = if span < 0.05 { 1 } else { 0 };
    move |v: &f64| format!("{:.*}%", decimals, v * 100.0)
}

/// Counts from ten to ten million, kept short on an axis.
pub fn compact(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.1}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 100.0 || v == v.round() {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// The label of the category at integer x positions (0, 1, ...); ticks between
/// categories stay blank.
fn category_label(labels: &[String]) -> impl Fn(&f64) -> String + '_ {
    move |x: &f64| {
        let i = x.round();
        if (x - i).abs() < 1e-6 && i >= 0.0 {
            labels.get(i as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    }
}

/// A value range with room above the largest value; never empty.
fn value_range(values: impl Iterator<Item = f64>, floor: f64) -> (f64, f64) {
    let (mut lo, mut hi) = (0.0f64, 0.0f64);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    let hi = if hi <= lo {
        lo + floor
    } else {
        hi + (hi - lo) * 0.12
    };
    let lo = if lo < 0.0 { lo - (hi - lo) * 0.05 } else { lo };
    (lo, hi)
}

type Canvas<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;
type Plot<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// One chart as an SVG string: a white canvas of `size`, then `draw` on it.
fn canvas(
    chart: &str,
    size: (u32, u32),
    draw: impl FnOnce(&Canvas<'_>) -> Result<()>,
) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(fail(chart))?;
        draw(&root)?;
        root.present().map_err(fail(chart))?;
    }
    Ok(svg)
}

/// Value-axis labels: shares as percentages, other values compact.
fn y_labels(percent: bool, span: f64) -> Box<dyn Fn(&f64) -> String> {
    if percent {
        Box::new(percent_label(span))
    } else {
        Box::new(|v: &f64| compact(*v))
    }
}

/// The series' legend at `position`, on a translucent white box.
fn legend<'a, 'b: 'a>(
    chart: &str,
    c: &mut Plot<'a, 'b>,
    position: SeriesLabelPosition,
) -> Result<()> {
    c.configure_series_labels()
        .position(position)
        .label_font((FONT, 12))
        .background_style(WHITE.mix(0.85))
        .border_style(GREY)
        .draw()
        .map_err(fail(chart))
}

/// Grouped bars: one group per category, one bar per series.
pub fn bars(
    chart: &str,
    categories: &[String],
    series: &[Series<'_>],
    percent: bool,
) -> Result<String> {
    canvas(chart, SIZE, |root| {
        let (lo, hi) = value_range(series.iter().flat_map(|s| s.values.iter().copied()), 1.0);
        let n = categories.len().max(1);
        let mut c = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(34)
            .y_label_area_size(56)
            .build_cartesian_2d(-0.5..(n as f64 - 0.5), lo..hi)
            .map_err(fail(chart))?;
        let y_format = y_labels(percent, hi - lo);
        c.configure_mesh()
            .disable_x_mesh()
            .x_labels(n)
            .x_label_formatter(&category_label(categories))
            .y_label_formatter(&y_format)
            .label_style((FONT, 12))
            .draw()
            .map_err(fail(chart))?;
        let k = series.len().max(1) as f64;
        let width = 0.8 / k;
        for (j, s) in series.iter().enumerate() {
            let color = s.color;
            c.draw_series(s.values.iter().enumerate().map(|(i, v)| {
                let x0 = i as f64 - 0.4 + j as f64 * width;
                Rectangle::new([(x0, 0.0), (x0 + width * 0.9, *v)], color.filled())
            }))
            .map_err(fail(chart))?
            .label(s.name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
        }
        legend(chart, &mut c, SeriesLabelPosition::UpperRight)?;
        Ok(())
    })
}

/// The Pareto curve through `points` (customer share, margin share), with the
/// top-20 % share marked and labelled.
pub fn pareto(chart: &str, points: &[(String, f64, f64)], top20: f64) -> Result<String> {
    canvas(chart, SIZE, |root| {
        let lo = points.iter().map(|p| p.2).fold(0.0f64, f64::min);
        let hi = points.iter().map(|p| p.2).fold(1.0f64, f64::max) * 1.05;
        let mut c = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..1.0, lo..hi)
            .map_err(fail(chart))?;
        c.configure_mesh()
            .x_labels(6)
            .x_label_formatter(&percent_label(1.0))
            .y_label_formatter(&percent_label(hi - lo))
            .x_desc("customers, most profitable first")
            .y_desc("cumulative margin share")
            .label_style((FONT, 12))
            .draw()
            .map_err(fail(chart))?;
        // The line of equal shares: how far the curve bows above it is the
        // concentration.
        c.draw_series(LineSeries::new(
            [(0.0, 0.0), (1.0, 1.0)],
            GREY.stroke_width(1),
        ))
        .map_err(fail(chart))?;
        c.draw_series(LineSeries::new(
            points.iter().map(|p| (p.1, p.2)),
            BLUE.stroke_width(2),
        ))
        .map_err(fail(chart))?;
        c.draw_series(
            points
                .iter()
                .map(|p| Circle::new((p.1, p.2), 3, BLUE.filled())),
        )
        .map_err(fail(chart))?;
        let label = (FONT, 11).into_font().color(&INK);
        c.draw_series(points.iter().filter(|p| !p.0.is_empty()).map(|p| {
            Text::new(
                p.0.clone(),
                ((p.1 + 0.01).min(0.9), p.2 - (hi - lo) * 0.04),
                label.clone(),
            )
        }))
        .map_err(fail(chart))?;
        c.draw_series(LineSeries::new([(0.2, lo), (0.2, hi)], RED.stroke_width(1)))
            .map_err(fail(chart))?;
        c.draw_series([Circle::new((0.2, top20), 5, RED.filled())])
            .map_err(fail(chart))?;
        c.draw_series([Text::new(
            format!("top 20 %: {:.1} % of the margin", top20 * 100.0),
            (0.23, top20 - (hi - lo) * 0.08),
            (FONT, 13).into_font().color(&RED),
        )])
        .map_err(fail(chart))?;
        Ok(())
    })
}

/// Lines over periods labelled by `x_labels`; shares when `percent`.
pub fn lines(
    chart: &str,
    x_labels: &[String],
    series: &[Series<'_>],
    percent: bool,
) -> Result<String> {
    canvas(chart, SIZE, |root| {
        let (lo, hi) = value_range(series.iter().flat_map(|s| s.values.iter().copied()), 1.0);
        let n = x_labels.len().max(1);
        let mut c = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(34)
            .y_label_area_size(56)
            .build_cartesian_2d(-0.5..(n as f64 - 0.5), lo..hi)
            .map_err(fail(chart))?;
        let y_format = y_labels(percent, hi - lo);
        c.configure_mesh()
            .x_labels(n.min(8))
            .x_label_formatter(&category_label(x_labels))
            .y_label_formatter(&y_format)
            .label_style((FONT, 12))
            .draw()
            .map_err(fail(chart))?;
        for s in series {
            let color = s.color;
            let points: Vec<(f64, f64)> = s
                .values
                .iter()
                .enumerate()
                .map(|(i, v)| (i as f64, *v))
                .collect();
            c.draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                .map_err(fail(chart))?
                .label(s.name)
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 14, y)], color.stroke_width(2))
                });
            // Markers only while they stay apart (a weekly curve over years
            // would be a smear of dots).
            if points.len() <= 60 {
                c.draw_series(points.iter().map(|p| Circle::new(*p, 3, color.filled())))
                    .map_err(fail(chart))?;
            }
        }
        legend(chart, &mut c, SeriesLabelPosition::UpperLeft)?;
        Ok(())
    })
}

/// A retained share's shade: light to dark blue, the square root spreading the
/// small shares most cohorts have.
fn shade(v: f64) -> RGBColor {
    let t = v.clamp(0.0, 1.0).sqrt();
    let mix = |a: f64, b: f64| (a + (b - a) * t) as u8;
    RGBColor(mix(240.0, 8.0), mix(246.0, 48.0), mix(252.0, 107.0))
}

/// The cohort triangle: a row per cohort (oldest on top), a column per period
/// after the first purchase, shaded by the share still buying. Rows of empty
/// cohorts stay blank.
pub fn heatmap(chart: &str, rows: &[String], cells: &[Option<Vec<f64>>]) -> Result<String> {
    // Taller with more cohorts, so each row stays a readable band.
    let height = (90 + 13 * rows.len() as u32).clamp(300, 880);
    canvas(chart, (640, height), |root| {
        // The colour scale on the right: with many periods the cells carry no
        // numbers, so the shade alone has to be readable.
        let (area, scale) = root.split_horizontally(570);
        let mut key = ChartBuilder::on(&scale)
            .margin_top(12)
            .margin_bottom(52)
            .margin_right(8)
            .y_label_area_size(40)
            .build_cartesian_2d(0.0..1.0, 0.0..1.0)
            .map_err(fail(chart))?;
        key.configure_mesh()
            .disable_mesh()
            .disable_x_axis()
            .y_labels(6)
            .y_label_formatter(&percent_label(1.0))
            .label_style((FONT, 10))
            .draw()
            .map_err(fail(chart))?;
        key.draw_series((0..20).map(|i| {
            let y = i as f64 / 20.0;
            Rectangle::new([(0.0, y), (1.0, y + 0.05)], shade(y + 0.025).filled())
        }))
        .map_err(fail(chart))?;
        let root = area;
        let n = rows.len().max(1);
        let cols = cells
            .iter()
            .flatten()
            .map(Vec::len)
            .max()
            .unwrap_or(0)
            .max(1);
        // Oldest on top: row i is drawn at y = n - 1 - i.
        let labels: Vec<String> = rows.iter().rev().cloned().collect();
        let mut c = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(84)
            .build_cartesian_2d(0.5..(cols as f64 + 0.5), -0.5..(n as f64 - 0.5))
            .map_err(fail(chart))?;
        c.configure_mesh()
            .disable_mesh()
            .x_labels(cols.min(12))
            .y_labels(n.min(24))
            .x_label_formatter(&|x: &f64| {
                if (x - x.round()).abs() < 1e-6 {
                    format!("+{}", x.round())
                } else {
                    String::new()
                }
            })
            .y_label_formatter(&category_label(&labels))
            .x_desc("periods after the first purchase")
            .label_style((FONT, 11))
            .draw()
            .map_err(fail(chart))?;
        let with_text = n * cols <= 160;
        for (i, row) in cells.iter().enumerate() {
            let Some(row) = row else { continue };
            let y = (n - 1 - i) as f64;
            c.draw_series(row.iter().enumerate().map(|(j, v)| {
                let x = j as f64 + 1.0;
                Rectangle::new(
                    [(x - 0.48, y - 0.46), (x + 0.48, y + 0.46)],
                    shade(*v).filled(),
                )
            }))
            .map_err(fail(chart))?;
            if with_text {
                c.draw_series(row.iter().enumerate().map(|(j, v)| {
                    let ink = if *v > 0.35 { WHITE } else { INK };
                    Text::new(
                        format!("{:.0}%", v * 100.0),
                        (j as f64 + 1.0, y),
                        (FONT, 10)
                            .into_font()
                            .color(&ink)
                            .pos(Pos::new(HPos::Center, VPos::Center)),
                    )
                }))
                .map_err(fail(chart))?;
            }
        }
        Ok(())
    })
}

/// Rates with their 95 % intervals as error bars, side by side per category.
pub fn intervals(chart: &str, categories: &[String], series: &[Intervals<'_>]) -> Result<String> {
    canvas(chart, SIZE, |root| {
        let (_, hi) = value_range(
            series.iter().flat_map(|s| s.values.iter().map(|v| v.2)),
            1.0,
        );
        let hi = hi.min(1.0);
        let n = categories.len().max(1);
        let mut c = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(34)
            .y_label_area_size(56)
            .build_cartesian_2d(-0.5..(n as f64 - 0.5), 0.0..hi)
            .map_err(fail(chart))?;
        c.configure_mesh()
            .disable_x_mesh()
            .x_labels(n)
            .x_label_formatter(&category_label(categories))
            .y_label_formatter(&percent_label(hi))
            .y_desc("win-back rate")
            .label_style((FONT, 12))
            .draw()
            .map_err(fail(chart))?;
        let k = series.len().max(1) as f64;
        for (j, s) in series.iter().enumerate() {
            let color = s.color;
            let x = |i: usize| i as f64 - 0.2 + 0.4 * j as f64 / (k - 1.0).max(1.0);
            c.draw_series(s.values.iter().enumerate().map(|(i, v)| {
                ErrorBar::new_vertical(x(i), v.0, v.1, v.2, color.stroke_width(2), 10)
            }))
            .map_err(fail(chart))?
            .label(s.name)
            .legend(move |(x, y)| Circle::new((x + 5, y), 4, color.filled()));
            c.draw_series(
                s.values
                    .iter()
                    .enumerate()
                    .map(|(i, v)| Circle::new((x(i), v.1), 4, color.filled())),
            )
            .map_err(fail(chart))?;
        }
        legend(chart, &mut c, SeriesLabelPosition::UpperRight)?;
        Ok(())
    })
}

/// A projected share over periods (a line) with observed shares (dots).
pub fn projection(
    chart: &str,
    projected: &[(f64, f64)],
    observed: &[(f64, f64)],
) -> Result<String> {
    canvas(chart, SIZE, |root| {
        let last = projected
            .iter()
            .chain(observed)
            .map(|p| p.0)
            .fold(1.0f64, f64::max);
        let mut c = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..last, 0.0..1.05)
            .map_err(fail(chart))?;
        c.configure_mesh()
            .x_labels(last.min(13.0) as usize)
            .x_label_formatter(&|x: &f64| format!("{x:.0}"))
            .y_label_formatter(&percent_label(1.0))
            .x_desc("periods since acquisition")
            .y_desc("share of the cohort")
            .label_style((FONT, 12))
            .draw()
            .map_err(fail(chart))?;
        c.draw_series(LineSeries::new(
            projected.iter().copied(),
            BLUE.stroke_width(2),
        ))
        .map_err(fail(chart))?
        .label("projected (sBG)")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 14, y)], BLUE.stroke_width(2)));
        c.draw_series(observed.iter().map(|p| Circle::new(*p, 4, ORANGE.filled())))
            .map_err(fail(chart))?
            .label("observed")
            .legend(|(x, y)| Circle::new((x + 5, y), 4, ORANGE.filled()));
        legend(chart, &mut c, SeriesLabelPosition::UpperRight)?;
        Ok(())
    })
}
