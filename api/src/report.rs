//! The visual report's page model: the two charts laid out as SVG geometry by the server, the
//! full table, and the data-quality panel. `templates/report.html` renders it; no JavaScript.

use std::collections::BTreeMap;

use askama::Template;
use hiring::ingestions::{Ingestion, RejectCount};
use hiring::metrics::{DepartmentHires, QuarterlyHires, YearTotals};

/// The quarters' colours: Okabe–Ito, distinguishable with the common colour-vision
/// deficiencies, each with at least 3:1 contrast against white.
pub const QUARTER_COLOURS: [&str; 4] = ["#0072B2", "#D55E00", "#009E73", "#CC79A7"];

/// A bar to draw: its label and its segments' (name, colour, value).
type Stack = (String, Vec<(&'static str, &'static str, i64)>);

/// Width of the charts' drawing, in SVG units (the SVG scales to its container).
const WIDTH: f64 = 960.0;
/// Room for the department names left of the bars.
const LABELS: f64 = 230.0;
/// Room right of the longest bar for its total.
const TRAILER: f64 = 70.0;
const BAR: f64 = 22.0;
const GAP: f64 = 10.0;
const TOP: f64 = 34.0;
const AXIS: f64 = 40.0;

/// What the page shows, as read from the database.
#[derive(Debug)]
pub struct ReportData {
    /// The year shown.
    pub year: i32,
    /// The years with hires, newest first.
    pub years: Vec<i32>,
    /// The first metric for the year.
    pub hires: Vec<QuarterlyHires>,
    /// The second metric for the year.
    pub above: Vec<DepartmentHires>,
    /// The year's totals (for the mean).
    pub totals: YearTotals,
    /// The latest ingestions, newest first; `None` on the public report (aggregates only).
    pub ingestions: Option<Vec<Ingestion>>,
    /// Their rejects by reason.
    pub counts: Vec<RejectCount>,
    /// Departments in the table.
    pub departments: i64,
}

/// The page.
#[derive(Template)]
#[template(path = "report.html")]
pub struct ReportPage {
    /// The year shown.
    pub year: i32,
    /// The years offered by the selector (those with hires, and the one shown).
    pub years: Vec<i32>,
    /// Hires by department, stacked by quarter; `None` when the year has no hires.
    pub hires_chart: Option<Chart>,
    /// Departments above the mean, with the mean line; `None` when the year has no hires.
    pub above_chart: Option<Chart>,
    /// The department × job table.
    pub rows: Vec<TableRow>,
    /// The year's hires and mean, for the text alternative.
    pub totals: YearTotals,
    /// The mean, formatted.
    pub mean: String,
    /// The latest ingestions and their rejects by reason.
    pub ingestions: Vec<IngestionView>,
    /// The quarters' legend: name and colour.
    pub legend: Vec<(&'static str, &'static str)>,
    /// True when no data at all is loaded (no ingestions and no departments).
    pub empty_database: bool,
    /// The public report (no token): aggregates only, no ingestion metadata.
    pub public: bool,
}

/// A horizontal bar chart.
#[derive(Debug)]
pub struct Chart {
    /// The SVG element's id.
    pub id: &'static str,
    /// Its title (read by screen readers, shown as a tooltip).
    pub title: String,
    /// Its text alternative.
    pub description: String,
    /// The SVG's height.
    pub height: f64,
    /// The SVG's width.
    pub width: f64,
    /// The bars, top to bottom.
    pub bars: Vec<Bar>,
    /// The x axis ticks.
    pub ticks: Vec<Tick>,
    /// Where the value axis starts and its baseline's y.
    pub x0: f64,
    /// The bottom of the bars.
    pub baseline: f64,
    /// The mean line, on the above-the-mean chart.
    pub mean: Option<MeanLine>,
}

/// One bar: a department and its segments.
#[derive(Debug)]
pub struct Bar {
    /// The department's name (the label).
    pub label: String,
    /// The bar's top.
    pub y: f64,
    /// The label's baseline.
    pub text_y: f64,
    /// The segments, left to right.
    pub segments: Vec<Segment>,
    /// The total, written right of the bar.
    pub total: i64,
    /// Where the total is written.
    pub total_x: f64,
}

/// One segment of a bar.
#[derive(Debug)]
pub struct Segment {
    /// Its left edge.
    pub x: f64,
    /// Its width.
    pub width: f64,
    /// Its fill.
    pub colour: &'static str,
    /// What it counts, e.g. `Q2`.
    pub name: &'static str,
    /// Its value.
    pub value: i64,
}

/// A tick of the value axis.
#[derive(Debug)]
pub struct Tick {
    /// Its x.
    pub x: f64,
    /// Its value.
    pub label: i64,
}

/// The mean line.
#[derive(Debug)]
pub struct MeanLine {
    /// Its x.
    pub x: f64,
    /// Its label, e.g. `mean 159.4`.
    pub label: String,
}

/// A row of the table.
#[derive(Debug)]
pub struct TableRow {
    /// The department.
    pub department: String,
    /// The job.
    pub job: String,
    /// Q1..Q4.
    pub quarters: [i64; 4],
    /// Their sum.
    pub total: i64,
}

/// An ingestion in the data-quality panel.
#[derive(Debug)]
pub struct IngestionView {
    /// The ingestion.
    pub ingestion: Ingestion,
    /// When it started, `YYYY-MM-DD HH:MM:SS UTC`.
    pub started: String,
    /// Its rejects by reason.
    pub reasons: Vec<(String, i64)>,
}

impl ReportPage {
    /// Lays the page out.
    pub fn new(data: ReportData) -> ReportPage {
        let ReportData { year, mut years, hires, above, totals, ingestions, counts, departments } = data;
        let public = ingestions.is_none();
        let ingestions = ingestions.unwrap_or_default();
        let (hires, above, counts) = (&hires[..], &above[..], &counts[..]);
        if !years.contains(&year) {
            years.push(year);
            years.sort_unstable_by(|a, b| b.cmp(a));
        }
        // One bar per department id, labelled with its name: two departments may share one.
        let mut per_department: BTreeMap<i32, (&str, [i64; 4])> = BTreeMap::new();
        for row in hires {
            let (_, quarters) = per_department.entry(row.department_id).or_insert((&row.department, [0; 4]));
            for (sum, value) in quarters.iter_mut().zip([row.q1, row.q2, row.q3, row.q4]) {
                *sum += value;
            }
        }
        let mut per_department: Vec<(i32, (&str, [i64; 4]))> = per_department.into_iter().collect();
        per_department.sort_by(|(a_id, (a, _)), (b_id, (b, _))| (a.as_bytes(), a_id).cmp(&(b.as_bytes(), b_id)));
        let stacked: Vec<Stack> = per_department
            .into_iter()
            .map(|(_, (department, quarters))| {
                let segments = ["Q1", "Q2", "Q3", "Q4"]
                    .into_iter()
                    .zip(QUARTER_COLOURS)
                    .zip(quarters)
                    .map(|((name, colour), value)| (name, colour, value))
                    .collect();
                (department.to_owned(), segments)
            })
            .collect();
        let hires_chart = (!stacked.is_empty()).then(|| Chart {
            id: "hires-chart",
            title: format!("Hires by department in {year}, stacked by quarter"),
            description: format!(
                "{} hires in {} departments; each bar is a department, its segments the quarters Q1 to Q4 \
                 left to right; the table below lists every department and job.",
                totals.hires,
                stacked.len()
            ),
            ..Chart::horizontal(&stacked, None)
        });
        let mean = totals.mean();
        let above_bars: Vec<Stack> =
            above.iter().map(|d| (d.department.clone(), vec![("hires", "#0072B2", d.hired)])).collect();
        let above_chart = (!above_bars.is_empty()).then(|| Chart {
            id: "above-chart",
            title: format!("Departments above the mean of {mean:.1} hires in {year}"),
            description: format!(
                "{} departments hired more than the mean of {mean:.1} hires per department in {year}: {}.",
                above.len(),
                above.iter().map(|d| format!("{} {}", d.department, d.hired)).collect::<Vec<_>>().join(", ")
            ),
            ..Chart::horizontal(&above_bars, Some(mean))
        });
        let rows = hires
            .iter()
            .map(|r| TableRow {
                department: r.department.clone(),
                job: r.job.clone(),
                quarters: [r.q1, r.q2, r.q3, r.q4],
                total: r.q1 + r.q2 + r.q3 + r.q4,
            })
            .collect();
        let empty_database = ingestions.is_empty() && departments == 0;
        let ingestions = ingestions
            .into_iter()
            .map(|ingestion| {
                let reasons = counts
                    .iter()
                    .filter(|c| c.ingestion_id == ingestion.id)
                    .map(|c| (c.reason.clone(), c.count))
                    .collect();
                let started = ingestion.started_at.format("%Y-%m-%d %H:%M:%S UTC").to_string();
                IngestionView { ingestion, started, reasons }
            })
            .collect();
        ReportPage {
            year,
            years,
            hires_chart,
            above_chart,
            rows,
            totals,
            mean: format!("{mean:.1}"),
            ingestions,
            empty_database,
            public,
            legend: ["Q1", "Q2", "Q3", "Q4"].into_iter().zip(QUARTER_COLOURS).collect(),
        }
    }
}

impl Chart {
    /// Horizontal bars of stacked segments, scaled so the longest bar (or the mean) fits.
    fn horizontal(bars: &[Stack], mean: Option<f64>) -> Chart {
        let largest = bars.iter().map(|(_, s)| s.iter().map(|(_, _, v)| *v).sum::<i64>()).max().unwrap_or(0);
        let top = nice_ceiling((largest as f64).max(mean.unwrap_or(0.0)).max(1.0));
        let span = WIDTH - LABELS - TRAILER;
        let scale = |value: f64| LABELS + value / top * span;
        let bars: Vec<Bar> = bars
            .iter()
            .enumerate()
            .map(|(i, (label, values))| {
                let y = TOP + i as f64 * (BAR + GAP);
                let mut x = LABELS;
                let segments = values
                    .iter()
                    .map(|&(name, colour, value)| {
                        let width = scale(value as f64) - LABELS;
                        let segment = Segment { x: round(x), width: round(width), colour, name, value };
                        x += width;
                        segment
                    })
                    .collect();
                let total = values.iter().map(|(_, _, v)| v).sum();
                Bar {
                    label: label.clone(),
                    y: round(y),
                    text_y: round(y + BAR * 0.7),
                    segments,
                    total,
                    total_x: round(x + 6.0),
                }
            })
            .collect();
        let baseline = TOP + bars.len() as f64 * (BAR + GAP);
        let step = top / 5.0;
        let ticks = (0..=5)
            .map(|i| Tick { x: round(scale(step * f64::from(i))), label: (step * f64::from(i)) as i64 })
            .collect();
        let mean = mean.map(|m| MeanLine { x: round(scale(m)), label: format!("mean {m:.1}") });
        Chart {
            id: "chart",
            title: String::new(),
            description: String::new(),
            height: round(baseline + AXIS),
            width: WIDTH,
            bars,
            ticks,
            x0: LABELS,
            baseline: round(baseline),
            mean,
        }
    }
}

/// The smallest of 1, 2 or 5 × 10ⁿ, times 5 ticks, at or above `value`.
fn nice_ceiling(value: f64) -> f64 {
    let step = value / 5.0;
    let magnitude = 10f64.powf(step.log10().floor());
    let nice =
        [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * magnitude).find(|s| *s >= step).unwrap_or(10.0 * magnitude);
    (nice * 5.0).max(5.0)
}

fn round(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_axis_ends_at_a_round_number_above_the_largest_value() {
        assert_eq!(nice_ceiling(216.0), 250.0);
        assert_eq!(nice_ceiling(1.0), 5.0);
        assert_eq!(nice_ceiling(1000.0), 1000.0);
        assert_eq!(nice_ceiling(1001.0), 2500.0, "steps of 500");
    }

    #[test]
    fn segments_are_stacked_in_quarter_order_and_the_mean_is_on_the_scale() {
        let chart = Chart::horizontal(
            &[("Sales".into(), vec![("Q1", "#000", 10), ("Q2", "#111", 0), ("Q3", "#222", 30), ("Q4", "#333", 10)])],
            Some(25.0),
        );
        let bar = &chart.bars[0];
        assert_eq!(bar.total, 50);
        assert_eq!(bar.segments[0].x, LABELS);
        assert!((bar.segments[2].x - (bar.segments[0].x + bar.segments[0].width)).abs() < 0.2);
        let mean = chart.mean.expect("a mean line");
        let end = bar.segments[3].x + bar.segments[3].width;
        assert!(mean.x > LABELS && mean.x < end, "the mean (25) is left of the bar's end (50)");
    }
}
