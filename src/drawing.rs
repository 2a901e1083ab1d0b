//! A metric's plot as a PNG: its recent values (top panel) and anomaly
//! score against `alert_threshold` (bottom panel), with alerts marked as red
//! rings on both and level changes as purple triangles. Rendered natively
//! with plotters; text uses the DejaVu font embedded in the binary, so no
//! system fonts are needed.

use std::sync::Once;

use chrono::DateTime;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use crate::domain::Series;

pub const WIDTH: u32 = 900;
pub const HEIGHT: u32 = 520;
const FONT: &str = "sans-serif";

#[derive(Debug, thiserror::Error)]
#[error("rendering the plot of {metric}: {message}")]
pub struct DrawError {
    pub metric: String,
    pub message: String,
}

fn fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Only fails on invalid font data, which the embedded font is not.
        let _ = register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
        let _ = register_font(FONT, FontStyle::Bold, dejavu::sans::bold());
    });
}

fn col(s: &Series, name: &str) -> Vec<f64> {
    s.extra
        .get(name)
        .cloned()
        .unwrap_or_else(|| vec![f64::NAN; s.values.len()])
}

/// Render `series` (from `plot_sql`: values plus `metric_score`,
/// `metric_alert`, `metric_change`) as a PNG.
pub fn render_png(
    batch: &str,
    metric: &str,
    series: &Series,
    alert_threshold: f64,
) -> Result<Vec<u8>, DrawError> {
    let err = |message: String| DrawError {
        metric: metric.to_string(),
        message,
    };
    let mut rgb = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
    draw(batch, metric, series, alert_threshold, &mut rgb).map_err(err)?;
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, WIDTH, HEIGHT);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().map_err(|e| err(e.to_string()))?;
        w.write_image_data(&rgb).map_err(|e| err(e.to_string()))?;
    }
    Ok(out)
}

/// What both panels share: the series, its flag columns and the time axis.
struct Frame<'a> {
    s: &'a Series,
    threshold: f64,
    score: Vec<f64>,
    alert: Vec<f64>,
    change: Vec<f64>,
    /// First and last observation, µs.
    first: i64,
    last: i64,
    /// The x axis: a little wider than the data.
    t0: i64,
    t1: i64,
}

type Area<'b> = DrawingArea<BitMapBackend<'b>, plotters::coord::Shift>;

fn draw_err<E: std::error::Error + Send + Sync>(e: DrawingAreaErrorKind<E>) -> String {
    e.to_string()
}

const RED: RGBColor = RGBColor(214, 39, 40);
const ORANGE: RGBColor = RGBColor(255, 127, 14);

fn draw(
    batch: &str,
    metric: &str,
    s: &Series,
    threshold: f64,
    rgb: &mut [u8],
) -> Result<(), String> {
    fonts();
    let root = BitMapBackend::with_buffer(rgb, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(draw_err)?;
    let title = format!("{batch} / {metric}");
    let root = root
        .titled(&title, (FONT, 20).into_font().style(FontStyle::Bold))
        .map_err(draw_err)?;
    let (top, bottom) = root.split_vertically(HEIGHT * 62 / 100);
    let n = s.values.len();
    if n == 0 {
        top.draw(&Text::new(
            "no observations yet",
            (WIDTH as i32 / 2 - 80, 100),
            (FONT, 16),
        ))
        .map_err(draw_err)?;
        root.present().map_err(draw_err)?;
        return Ok(());
    }
    // A little room either side, so a marker on the newest point (where
    // alerts usually are) is drawn whole.
    // Saturating: a database may hold times at the ends of i64 (stored
    // before ingest bounded them).
    let (first, last) = (s.timestamps_us[0], s.timestamps_us[n - 1]);
    let room = (last.saturating_sub(first) / 40).max(1);
    let frame = Frame {
        s,
        threshold,
        score: col(s, "metric_score"),
        alert: col(s, "metric_alert"),
        change: col(s, "metric_change"),
        first,
        last,
        t0: first.saturating_sub(room),
        t1: last.saturating_add(room),
    };
    draw_values(&top, &frame)?;
    draw_scores(&bottom, &frame)?;
    root.present().map_err(draw_err)?;
    Ok(())
}

impl Frame<'_> {
    /// Time labels: with the date when the span passes a day and a half.
    fn label_time(&self, us: &i64) -> String {
        DateTime::from_timestamp_micros(*us)
            .map(|t| {
                if self.last.saturating_sub(self.first) > 36 * 3_600_000_000 {
                    t.format("%m-%d %H:%M").to_string()
                } else {
                    t.format("%H:%M").to_string()
                }
            })
            .unwrap_or_default()
    }

    /// The finite points of `ys` whose `flags` are set.
    fn flagged(&self, flags: &[f64], ys: &[f64]) -> Vec<(i64, f64)> {
        (0..self.s.values.len())
            .filter(|i| flags[*i] > 0.0 && ys[*i].is_finite())
            .map(|i| (self.s.timestamps_us[i], ys[i]))
            .collect()
    }

    /// The finite points of `ys`.
    fn finite<'b>(&'b self, ys: &'b [f64]) -> impl Iterator<Item = (i64, f64)> + 'b {
        self.s
            .timestamps_us
            .iter()
            .zip(ys)
            .filter(|(_, v)| v.is_finite())
            .map(|(t, v)| (*t, *v))
    }
}

/// Top panel: the values, alerts as red rings, changes as purple triangles.
fn draw_values(area: &Area<'_>, f: &Frame<'_>) -> Result<(), String> {
    let finite = f.s.values.iter().copied().filter(|v| v.is_finite());
    let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
    let pad = ((hi - lo) * 0.08).max(1e-9);
    let mut chart = ChartBuilder::on(area)
        .margin(10)
        .x_label_area_size(22)
        .y_label_area_size(60)
        .build_cartesian_2d(f.t0..f.t1, (lo - pad)..(hi + pad))
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .x_labels(8)
        .x_label_formatter(&|us| f.label_time(us))
        .y_desc("value")
        .label_style((FONT, 12))
        .x_max_light_lines(1)
        .y_max_light_lines(1)
        .light_line_style(RGBColor(245, 245, 245))
        .draw()
        .map_err(draw_err)?;
    let blue = RGBColor(31, 119, 180);
    chart
        .draw_series(LineSeries::new(f.finite(&f.s.values), blue.stroke_width(2)))
        .map_err(draw_err)?
        .label("value")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], blue.stroke_width(2)));
    let purple = RGBColor(148, 103, 189);
    chart
        .draw_series(
            f.flagged(&f.alert, &f.s.values)
                .into_iter()
                .map(|p| Circle::new(p, 7, RED.stroke_width(3))),
        )
        .map_err(draw_err)?
        .label("alert")
        .legend(move |(x, y)| Circle::new((x + 8, y), 5, RED.stroke_width(2)));
    chart
        .draw_series(
            f.flagged(&f.change, &f.s.values)
                .into_iter()
                .map(|p| TriangleMarker::new(p, 8, purple.filled())),
        )
        .map_err(draw_err)?
        .label("change")
        .legend(move |(x, y)| TriangleMarker::new((x + 8, y), 6, purple.filled()));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(200, 200, 200))
        .label_font((FONT, 12))
        .draw()
        .map_err(draw_err)?;
    Ok(())
}

/// Bottom panel: the score as bars (red from the threshold up), the
/// threshold dashed, alerts as red rings.
fn draw_scores(area: &Area<'_>, f: &Frame<'_>) -> Result<(), String> {
    let threshold = f.threshold;
    let max_score = f
        .score
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(threshold, f64::max);
    let mut chart = ChartBuilder::on(area)
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(f.t0..f.t1, 0.0..(max_score * 1.1).max(1.0))
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .x_labels(8)
        .x_label_formatter(&|us| f.label_time(us))
        .y_desc("anomaly score")
        .x_desc("time (UTC)")
        .label_style((FONT, 12))
        .x_max_light_lines(1)
        .y_max_light_lines(1)
        .light_line_style(RGBColor(245, 245, 245))
        .draw()
        .map_err(draw_err)?;
    chart
        .draw_series(f.finite(&f.score).map(|(t, v)| {
            Rectangle::new(
                [(t, 0.0), (t, v)],
                if v >= threshold { RED } else { ORANGE }.stroke_width(2),
            )
        }))
        .map_err(draw_err)?;
    chart
        .draw_series(LineSeries::new(f.finite(&f.score), ORANGE.stroke_width(1)))
        .map_err(draw_err)?;
    chart
        .draw_series(DashedLineSeries::new(
            vec![(f.first, threshold), (f.last, threshold)],
            6,
            4,
            RED.stroke_width(1),
        ))
        .map_err(draw_err)?;
    area.draw(&Text::new(
        format!("alert_threshold {threshold}"),
        (WIDTH as i32 - 200, 14),
        (FONT, 12).into_font().color(&RED),
    ))
    .map_err(draw_err)?;
    chart
        .draw_series(
            f.flagged(&f.alert, &f.score)
                .into_iter()
                .map(|p| Circle::new(p, 6, RED.stroke_width(3))),
        )
        .map_err(draw_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_png_of_the_expected_size() {
        let n = 60;
        let mut s = Series {
            timestamps_us: (0..n)
                .map(|i| 1_700_000_000_000_000 + i * 60_000_000)
                .collect(),
            values: (0..n).map(|i| 10.0 + (i as f64 / 5.0).sin()).collect(),
            extra: Default::default(),
        };
        s.values[50] = 40.0;
        let mut score = vec![0.1; n as usize];
        score[50] = 0.97;
        let mut alert = vec![0.0; n as usize];
        alert[50] = 1.0;
        s.extra.insert("metric_score".into(), score);
        s.extra.insert("metric_alert".into(), alert);
        let png = render_png("b", "m", &s, 0.8).expect("png");
        assert_eq!(&png[1..4], b"PNG");
        let decoder = png::Decoder::new(std::io::Cursor::new(&png));
        let reader = decoder.read_info().expect("decodes");
        assert_eq!((reader.info().width, reader.info().height), (WIDTH, HEIGHT));
        assert!(
            png.len() > 10_000,
            "a real picture, not a blank: {}",
            png.len()
        );
    }

    #[test]
    fn times_at_the_ends_of_i64_do_not_panic() {
        let s = Series {
            timestamps_us: vec![i64::MIN + 1, 0, i64::MAX],
            values: vec![1.0, 2.0, 3.0],
            extra: Default::default(),
        };
        // A whole picture, its time axis spanning the two ends.
        let png = render_png("b", "m", &s, 0.8).unwrap_or_else(|e| panic!("{e}"));
        let reader = png::Decoder::new(std::io::Cursor::new(&png))
            .read_info()
            .expect("decodes");
        assert_eq!((reader.info().width, reader.info().height), (WIDTH, HEIGHT));
    }
}
