//! SVG charts for the benchmarks, drawn with plotters' SVG backend (text is left to the
//! SVG viewer, so no font files are needed):
//!
//! - [`latency_histogram_svg`]: the latency distribution of several series (backends,
//!   paths) as one empirical CDF line each (x = latency in µs, y = fraction of samples
//!   ≤ x), on a log x axis when the samples span more than [`LOG_SCALE_MIN_SPAN`]×, else
//!   on a linear axis clipped at the largest p99.9;
//! - [`bar_chart_svg`]: one bar per labelled value.
//!
//! Non-finite samples and values (NaN, ±∞) are skipped; a log axis is used only when every
//! remaining sample is positive; empty input draws empty axes. plotters' errors come back as `std::io::Error`.

use std::io;
use std::ops::Range;
use std::path::Path;

use plotters::coord::ranged1d::{
    AsRangedCoord, DefaultFormatting, KeyPointHint, Ranged, ValueFormatter,
};
use plotters::coord::Shift;
use plotters::prelude::*;

/// One latency series: a label for the legend and its samples in microseconds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Series {
    pub label: String,
    pub samples_us: Vec<f64>,
}

impl Series {
    /// A series from a label and samples in µs.
    pub fn new(label: impl Into<String>, samples_us: Vec<f64>) -> Self {
        Self {
            label: label.into(),
            samples_us,
        }
    }
}

/// Size of every chart in pixels.
pub const CHART_SIZE: (u32, u32) = (960, 600);
/// A log x axis is used when the largest sample is more than this many times the smallest.
pub const LOG_SCALE_MIN_SPAN: f64 = 10.0;
/// The quantile a linear latency axis is clipped at.
pub const CLIP_QUANTILE: f64 = 0.999;
/// At most this many steps are drawn per CDF (larger series are sampled at even ranks).
pub const MAX_CDF_STEPS: usize = 2000;
/// Factor of head room around the data on a log axis.
const LOG_MARGIN: f64 = 1.2;
/// Fraction of the data's span left free left of the smallest sample on a linear axis.
const LINEAR_MARGIN: f64 = 0.05;
/// Fraction of head room above the tallest bar.
const BAR_HEADROOM: f64 = 0.1;
/// Font size (pixels) of the title.
const TITLE_FONT: u32 = 28;
/// Font size of the axis descriptions.
const DESC_FONT: u32 = 18;
/// Font size of tick labels, legend entries and bar values.
const LABEL_FONT: u32 = 14;
/// Margin around the chart (pixels).
const MARGIN: u32 = 20;
/// Height of the x label area (pixels).
const X_LABEL_AREA: u32 = 50;
/// Width of the y label area (pixels).
const Y_LABEL_AREA: u32 = 80;
/// Width of the CDF lines (pixels).
const LINE_WIDTH: u32 = 2;
/// Half the width of a bar, in slots (a slot is 1 wide).
const BAR_HALF_WIDTH: f64 = 0.4;

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type DrawResult<T> = Result<T, DrawingAreaErrorKind<io::Error>>;

/// plotters' error as an `io::Error` (plotters' backend error type is not reachable from
/// this crate, so the message is kept, not the kind).
fn to_io(e: DrawingAreaErrorKind<io::Error>) -> io::Error {
    io::Error::other(e.to_string())
}

/// A number for an axis or a label: few digits, k/M/G from 10⁴ up, exponent form beyond
/// 10¹² and below 10⁻³.
pub fn format_number(v: f64) -> String {
    let a = v.abs();
    if v == 0.0 {
        "0".into()
    } else if (1e4..1e12).contains(&a) {
        let (scale, suffix) = if a >= 1e9 {
            (1e9, "G")
        } else if a >= 1e6 {
            (1e6, "M")
        } else {
            (1e3, "k")
        };
        format!("{:.1}{suffix}", v / scale)
    } else if !(1e-3..1e12).contains(&a) {
        format!("{v:.2e}")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// The `q` quantile (nearest rank) of sorted, non-empty `sorted`.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    let rank = (q * n as f64).ceil() as usize;
    sorted[rank.clamp(1, n) - 1]
}

/// One series prepared for drawing: its label and its usable samples, sorted.
struct Prepared<'a> {
    label: &'a str,
    sorted: Vec<f64>,
}

/// The step points of the empirical CDF of `sorted`, sampled at most [`MAX_CDF_STEPS`]
/// times, cut at `x_max` (with a last point at `x_max` at the fraction reached there).
fn cdf_points(sorted: &[f64], x_max: f64) -> Vec<(f64, f64)> {
    let n = sorted.len();
    if n == 0 {
        return Vec::new();
    }
    let stride = n.div_ceil(MAX_CDF_STEPS).max(1);
    let mut points = Vec::with_capacity(2 * (n / stride + 2));
    let mut previous = 0.0;
    if sorted[0] <= x_max {
        points.push((sorted[0], 0.0));
    }
    let mut i = stride - 1;
    loop {
        let x = sorted[i];
        if x > x_max {
            points.push((x_max, previous));
            break;
        }
        let y = (i + 1) as f64 / n as f64;
        points.push((x, previous));
        points.push((x, y));
        previous = y;
        if i == n - 1 {
            break;
        }
        i = (i + stride).min(n - 1);
    }
    points
}

/// Labelled ticks on a log axis: 1, 2, 5 times each power of ten.
const LOG_BOLD_MANTISSAS: [f64; 3] = [1.0, 2.0, 5.0];
/// Grid lines on a log axis: 1 to 9 times each power of ten.
const LOG_LIGHT_MANTISSAS: [f64; 9] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0];

/// The values `m × 10^e` (for each mantissa `m`) inside `lo..=hi`, ascending; `lo > 0`.
fn log_ticks(lo: f64, hi: f64, mantissas: &[f64]) -> Vec<f64> {
    let first = lo.log10().floor() as i32;
    let last = hi.log10().ceil() as i32;
    (first..=last)
        .flat_map(|e| mantissas.iter().map(move |m| m * 10f64.powi(e)))
        .filter(|v| (lo..=hi).contains(v))
        .collect()
}

/// A range that is not empty: `lo..hi` widened around a single value.
fn widen(lo: f64, hi: f64) -> Range<f64> {
    if hi > lo {
        lo..hi
    } else {
        let pad = if lo != 0.0 { lo.abs() * 0.5 } else { 1.0 };
        lo - pad..hi + pad
    }
}

/// Draws `series` as empirical CDFs into `path` (see the module documentation).
pub fn latency_histogram_svg(path: &Path, title: &str, series: &[Series]) -> io::Result<()> {
    let root = SVGBackend::new(path, CHART_SIZE).into_drawing_area();
    draw_latency(&root, title, series).map_err(to_io)?;
    root.present().map_err(to_io)
}

fn draw_latency(root: &Area<'_>, title: &str, series: &[Series]) -> DrawResult<()> {
    root.fill(&WHITE)?;
    let finite: Vec<Vec<f64>> = series
        .iter()
        .map(|s| {
            s.samples_us
                .iter()
                .copied()
                .filter(|x| x.is_finite())
                .collect()
        })
        .collect();
    let min = finite
        .iter()
        .flatten()
        .copied()
        .fold(f64::INFINITY, f64::min);
    let max = finite
        .iter()
        .flatten()
        .copied()
        .fold(f64::NEG_INFINITY, f64::max);
    let log = min > 0.0 && max / min > LOG_SCALE_MIN_SPAN;
    let prepared: Vec<Prepared<'_>> = series
        .iter()
        .zip(finite)
        .map(|(s, mut v)| {
            v.sort_by(f64::total_cmp);
            Prepared {
                label: &s.label,
                sorted: v,
            }
        })
        .collect();
    if log {
        let (lo, hi) = (min / LOG_MARGIN, max * LOG_MARGIN);
        let range = (lo..hi)
            .log_scale()
            .with_key_points(log_ticks(lo, hi, &LOG_BOLD_MANTISSAS))
            .with_light_points(log_ticks(lo, hi, &LOG_LIGHT_MANTISSAS));
        cdf_chart(
            root,
            title,
            "latency (µs, log scale)",
            range,
            max,
            &prepared,
        )
    } else if min.is_finite() {
        let clip = prepared
            .iter()
            .filter(|p| !p.sorted.is_empty())
            .map(|p| quantile(&p.sorted, CLIP_QUANTILE))
            .fold(f64::NEG_INFINITY, f64::max);
        let pad = (clip - min) * LINEAR_MARGIN;
        let lo = if min >= 0.0 {
            (min - pad).max(0.0)
        } else {
            min - pad
        };
        let range = widen(lo, clip);
        let label = if clip < max {
            format!("latency (µs, clipped at p{})", CLIP_QUANTILE * 100.0)
        } else {
            "latency (µs)".to_string()
        };
        let x_max = range.end;
        cdf_chart(root, title, &label, range, x_max, &prepared)
    } else {
        // No usable sample at all: empty axes.
        cdf_chart(root, title, "latency (µs)", 0.0..1.0, 1.0, &prepared)
    }
}

fn cdf_chart<X>(
    root: &Area<'_>,
    title: &str,
    x_desc: &str,
    x: X,
    x_max: f64,
    series: &[Prepared<'_>],
) -> DrawResult<()>
where
    X: AsRangedCoord<Value = f64>,
    X::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", TITLE_FONT))
        .margin(MARGIN)
        .x_label_area_size(X_LABEL_AREA)
        .y_label_area_size(Y_LABEL_AREA)
        .build_cartesian_2d(x, 0.0..1.0)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc("fraction of interrupts ≤ x")
        .axis_desc_style(("sans-serif", DESC_FONT))
        .label_style(("sans-serif", LABEL_FONT))
        .x_label_formatter(&|v| format_number(*v))
        .y_label_formatter(&|v| format!("{v:.1}"))
        .draw()?;
    for (i, s) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let legend = if s.sorted.is_empty() {
            format!("{} (no samples)", s.label)
        } else {
            format!(
                "{} (n={}, p50 {} µs, p99 {} µs, p99.9 {} µs)",
                s.label,
                s.sorted.len(),
                format_number(quantile(&s.sorted, 0.5)),
                format_number(quantile(&s.sorted, 0.99)),
                format_number(quantile(&s.sorted, 0.999)),
            )
        };
        chart
            .draw_series(LineSeries::new(
                cdf_points(&s.sorted, x_max),
                color.stroke_width(LINE_WIDTH),
            ))?
            .label(legend)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(LINE_WIDTH))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font(("sans-serif", LABEL_FONT))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
}

/// Draws one bar per `(label, value)` into `path`, with `y_label` on the value axis and
/// each value written above its bar. Bars with a non-finite value are skipped.
pub fn bar_chart_svg(
    path: &Path,
    title: &str,
    y_label: &str,
    bars: &[(String, f64)],
) -> io::Result<()> {
    let root = SVGBackend::new(path, CHART_SIZE).into_drawing_area();
    draw_bars(&root, title, y_label, bars).map_err(to_io)?;
    root.present().map_err(to_io)
}

fn draw_bars(
    root: &Area<'_>,
    title: &str,
    y_label: &str,
    bars: &[(String, f64)],
) -> DrawResult<()> {
    root.fill(&WHITE)?;
    let bars: Vec<(&str, f64)> = bars
        .iter()
        .filter(|(_, v)| v.is_finite())
        .map(|(l, v)| (l.as_str(), *v))
        .collect();
    let lo = bars.iter().map(|b| b.1).fold(0.0, f64::min);
    let hi = bars.iter().map(|b| b.1).fold(0.0, f64::max);
    let span = if hi > lo { hi - lo } else { 1.0 };
    let y = if lo < 0.0 {
        lo - span * BAR_HEADROOM
    } else {
        0.0
    }..hi + span * BAR_HEADROOM;
    // Bar i is centred on x = i; the axis is labelled only there.
    let slots = bars.len().max(1);
    let x = BarAxis { slots };
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", TITLE_FONT))
        .margin(MARGIN)
        .x_label_area_size(X_LABEL_AREA)
        .y_label_area_size(Y_LABEL_AREA)
        .build_cartesian_2d(x, y)?;
    let label_of = |x: f64| {
        let i = x.round();
        if (x - i).abs() < BAR_HALF_WIDTH && i >= 0.0 {
            bars.get(i as usize).map(|b| b.0.to_string())
        } else {
            None
        }
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_desc(y_label)
        .axis_desc_style(("sans-serif", DESC_FONT))
        .label_style(("sans-serif", LABEL_FONT))
        .x_label_formatter(&|v| label_of(*v).unwrap_or_default())
        .y_label_formatter(&|v| format_number(*v))
        .draw()?;
    chart.draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
        let centre = i as f64;
        Rectangle::new(
            [
                (centre - BAR_HALF_WIDTH, 0.0),
                (centre + BAR_HALF_WIDTH, *v),
            ],
            Palette99::pick(i).filled(),
        )
    }))?;
    chart.draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
        Text::new(
            format_number(*v),
            (i as f64, *v),
            TextStyle::from(("sans-serif", LABEL_FONT).into_font()).pos(value_label_anchor(*v)),
        )
    }))?;
    Ok(())
}

/// The x axis of a bar chart: `slots` slots of width 1, slot i centred on x = i, with a
/// key point (label) at every centre and nowhere else.
struct BarAxis {
    slots: usize,
}

impl Ranged for BarAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let fraction = (value + 0.5) / self.slots as f64;
        limit.0 + (f64::from(limit.1 - limit.0) * fraction).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, _hint: Hint) -> Vec<f64> {
        (0..self.slots).map(|i| i as f64).collect()
    }

    fn range(&self) -> Range<f64> {
        -0.5..self.slots as f64 - 0.5
    }
}

/// Where a bar's value label hangs: on top of a positive bar, below a negative one.
fn value_label_anchor(value: f64) -> plotters::style::text_anchor::Pos {
    use plotters::style::text_anchor::{HPos, Pos, VPos};
    let v = if value < 0.0 { VPos::Top } else { VPos::Bottom };
    Pos::new(HPos::Center, v)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A temporary file path unique to this test process and `name`, removed on drop.
    struct TempSvg(std::path::PathBuf);

    impl TempSvg {
        fn new(name: &str) -> Self {
            Self(
                std::env::temp_dir()
                    .join(format!("postbox-plot-{}-{name}.svg", std::process::id())),
            )
        }

        fn read(&self) -> String {
            std::fs::read_to_string(&self.0).expect("SVG written")
        }
    }

    impl Drop for TempSvg {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn assert_svg_with(svg: &str, texts: &[&str]) {
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(200)]);
        assert!(svg.trim_end().ends_with("</svg>"));
        for t in texts {
            assert!(svg.contains(t), "missing {t:?}");
        }
    }

    /// Log-spaced samples from `lo` to `hi`.
    fn spread(lo: f64, hi: f64, n: usize) -> Vec<f64> {
        (0..n)
            .map(|i| lo * (hi / lo).powf(i as f64 / (n - 1) as f64))
            .collect()
    }

    #[test]
    fn cdf_chart_has_title_labels_and_one_line_per_series() {
        let f = TempSvg::new("cdf");
        let series = [
            Series::new("emulated posted", spread(20.0, 900.0, 5000)),
            Series::new("kernel", spread(15.0, 40.0, 300)),
        ];
        latency_histogram_svg(&f.0, "MSI to handler", &series).unwrap();
        let svg = f.read();
        assert_svg_with(
            &svg,
            &["MSI to handler", "emulated posted", "kernel", "log scale"],
        );
        // One polyline per series plus one per legend entry.
        assert!(
            svg.matches("<polyline").count() >= 2 * series.len(),
            "{svg}"
        );
    }

    #[test]
    fn narrow_range_uses_a_linear_axis_clipped_at_p999() {
        let f = TempSvg::new("linear");
        let mut samples: Vec<f64> = (0..10_000).map(|i| 5.0 + (i % 100) as f64 * 0.01).collect();
        samples.push(40.0); // one outlier beyond p99.9, less than 10x the minimum
        latency_histogram_svg(&f.0, "narrow", &[Series::new("a", samples)]).unwrap();
        let svg = f.read();
        assert_svg_with(&svg, &["narrow", "clipped at p99.9"]);
        assert!(!svg.contains("log scale"));
    }

    #[test]
    fn empty_single_and_non_finite_series_do_not_panic() {
        let cases: Vec<Vec<Series>> = vec![
            vec![],
            vec![Series::new("empty", vec![])],
            vec![Series::new("single", vec![3.0])],
            vec![Series::new("zero", vec![0.0])],
            vec![Series::new(
                "junk",
                vec![f64::NAN, f64::INFINITY, f64::NEG_INFINITY],
            )],
            vec![
                Series::new("mixed", vec![f64::NAN, 1.0, 1000.0, f64::INFINITY, -5.0]),
                Series::new("empty too", vec![]),
            ],
        ];
        for (i, series) in cases.iter().enumerate() {
            let f = TempSvg::new(&format!("edge{i}"));
            latency_histogram_svg(&f.0, "edge", series).unwrap();
            let svg = f.read();
            let labels: Vec<&str> = series.iter().map(|s| s.label.as_str()).collect();
            assert_svg_with(&svg, &labels);
        }
    }

    #[test]
    fn bar_chart_has_every_label_and_value() {
        let f = TempSvg::new("bars");
        let bars = vec![
            ("posted".to_string(), 12_500_000.0),
            ("remapped".to_string(), 9_100_000.0),
            ("kernel".to_string(), 2.5),
        ];
        bar_chart_svg(&f.0, "model pipeline", "interrupts/s", &bars).unwrap();
        let svg = f.read();
        assert_svg_with(
            &svg,
            &[
                "model pipeline",
                "interrupts/s",
                "posted",
                "remapped",
                "kernel",
                "2.5",
            ],
        );
        assert!(svg.matches("<rect").count() >= bars.len());
    }

    #[test]
    fn bar_chart_skips_non_finite_values_and_survives_empty_input() {
        let f = TempSvg::new("bars-edge");
        let bars = vec![
            ("not-a-number-bar".to_string(), f64::NAN),
            ("finite-bar".to_string(), -3.0),
            ("infinite-bar".to_string(), f64::INFINITY),
        ];
        bar_chart_svg(&f.0, "edge", "y", &bars).unwrap();
        let svg = f.read();
        assert_svg_with(&svg, &["finite-bar", "-3.0"]);
        assert!(!svg.contains("not-a-number-bar") && !svg.contains("infinite-bar"));
        bar_chart_svg(&f.0, "empty", "y", &[]).unwrap();
        assert_svg_with(&f.read(), &["empty"]);
    }

    #[test]
    fn unwritable_path_is_an_io_error() {
        let dir = TempSvg::new("no-such-dir");
        let path = dir.0.join("chart.svg");
        assert!(latency_histogram_svg(&path, "t", &[]).is_err());
        assert!(bar_chart_svg(&path, "t", "y", &[]).is_err());
    }

    #[test]
    fn cdf_points_end_at_one_and_stop_at_the_clip() {
        let sorted: Vec<f64> = (1..=10_000).map(f64::from).collect();
        let all = cdf_points(&sorted, f64::INFINITY);
        assert_eq!(all.last(), Some(&(10_000.0, 1.0)));
        assert!(all.len() <= 2 * MAX_CDF_STEPS + 2);
        assert!(all.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
        let clipped = cdf_points(&sorted, 5000.5);
        let (x, y) = *clipped.last().unwrap();
        assert_eq!(x, 5000.5);
        assert!((y - 0.5).abs() < 0.01, "{y}");
    }

    #[test]
    fn log_ticks_are_one_two_five_inside_the_range() {
        assert_eq!(
            log_ticks(12.5, 1080.0, &LOG_BOLD_MANTISSAS),
            vec![20.0, 50.0, 100.0, 200.0, 500.0, 1000.0]
        );
        assert_eq!(log_ticks(0.3, 0.9, &LOG_BOLD_MANTISSAS), vec![0.5]);
    }

    #[test]
    fn numbers_are_short() {
        assert_eq!(format_number(18_500_000.0), "18.5M");
        assert_eq!(format_number(2.5e9), "2.5G");
        assert_eq!(format_number(12_000.0), "12.0k");
        assert_eq!(format_number(250.0), "250");
        assert_eq!(format_number(2.5), "2.5");
        assert_eq!(format_number(0.25), "0.250");
        assert_eq!(format_number(0.0), "0");
        assert_eq!(format_number(1e-4), "1.00e-4");
    }

    #[test]
    fn quantile_is_nearest_rank() {
        let s: Vec<f64> = (1..=1000).map(f64::from).collect();
        assert_eq!(quantile(&s, 0.5), 500.0);
        assert_eq!(quantile(&s, 0.999), 999.0);
        assert_eq!(quantile(&s, 0.0), 1.0);
        assert_eq!(quantile(&[7.0], 0.99), 7.0);
    }
}
