//! `curves.png`: the training log of a fold as two panels, 1200 × 450 pixels, readable at 100 % zoom:
//! - left, "Loss": training (dashed) and validation (solid) loss per epoch;
//! - right, the task's metrics in percent, training dashed and validation solid, one colour per metric:
//!   mIoU (semantic), OA and mIoU (pixel sets), SQ, RQ and PQ (panoptic).
//!
//! Both panels have a title, axis labels, tick values, epoch numbers on the x axis and a legend; the epoch whose
//! weights the run kept (the best validation mIoU, the last one on ties, as `>=` in the training loops; for
//! panoptic the best validation PQ, the first one on ties, as its strict `>`) is marked by a vertical dotted
//! line in both panels, and its value is written in the metric panel's legend.

use std::path::Path;

use plotters::prelude::*;
use serde_json::{Map, Value};

use super::{rgb, Canvas, Drawn, FAMILY};
use crate::engine::Result;

/// Size of `curves.png`.
pub const SIZE: (usize, usize) = (1200, 450);
const BLUE: [u8; 3] = [0x00, 0x72, 0xB2];
const ORANGE: [u8; 3] = [0xE6, 0x9F, 0x00];
const GREEN: [u8; 3] = [0x00, 0x9E, 0x73];
const GREY: [u8; 3] = [90, 90, 90];

/// A metric of the right panel: log key suffix, label, factor to percent, colour.
type Metric = (&'static str, &'static str, f64, [u8; 3]);

/// Which task wrote the log (its keys and the rule that picked the best epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CurveKind {
    /// `{train,val}_loss`, `{train,val}_IoU` in percent; best = highest val mIoU, last on ties.
    Semantic,
    /// `{train,val}_accuracy` in percent, `{train,val}_IoU` as a fraction; best = highest val mIoU, last on
    /// ties.
    PixelSet,
    /// `{train,val}_{SQ,RQ,PQ}` as fractions; best = highest val PQ, first on ties.
    Panoptic,
}

impl CurveKind {
    /// (title of the metric panel, [(log key suffix, label, factor to percent, colour)]).
    fn metrics(self) -> (&'static str, Vec<Metric>) {
        match self {
            CurveKind::Semantic => ("mIoU (%)", vec![("IoU", "mIoU", 1.0, BLUE)]),
            CurveKind::PixelSet => (
                "OA and mIoU (%)",
                vec![("accuracy", "OA", 1.0, GREEN), ("IoU", "mIoU", 100.0, BLUE)],
            ),
            CurveKind::Panoptic => (
                "SQ, RQ and PQ (%)",
                vec![
                    ("SQ", "SQ", 100.0, GREEN),
                    ("RQ", "RQ", 100.0, ORANGE),
                    ("PQ", "PQ", 100.0, BLUE),
                ],
            ),
        }
    }
}

/// One line: label, (epoch, value) points, colour, dashed (training) or solid (validation).
struct Line {
    label: String,
    points: Vec<(i64, f64)>,
    colour: [u8; 3],
    dashed: bool,
}

/// The (epoch, value) points of `key` in the log, finite values only, by epoch.
fn series(trainlog: &Map<String, Value>, key: &str, factor: f64) -> Vec<(i64, f64)> {
    let mut v: Vec<(i64, f64)> = trainlog
        .iter()
        .filter_map(|(k, e)| Some((k.parse::<i64>().ok()?, e.get(key)?.as_f64()?)))
        .filter(|(_, x)| x.is_finite())
        .map(|(e, x)| (e, x * factor))
        .collect();
    v.sort_by_key(|p| p.0);
    v
}

/// The epoch the run kept and its validation metric, in percent (see the module doc).
pub fn best_epoch(trainlog: &Map<String, Value>, kind: CurveKind) -> Option<(i64, f64)> {
    let (key, factor) = match kind {
        CurveKind::Semantic => ("val_IoU", 1.0),
        CurveKind::PixelSet => ("val_IoU", 100.0),
        CurveKind::Panoptic => ("val_PQ", 100.0),
    };
    let mut best: Option<(i64, f64)> = None;
    for (e, v) in series(trainlog, key, factor) {
        let better = match best {
            None => true,
            Some((_, b)) if kind == CurveKind::Panoptic => v > b,
            Some((_, b)) => v >= b,
        };
        if better {
            best = Some((e, v));
        }
    }
    best
}

/// Writes `curves.png` of a trainlog ({epoch: {train_loss, val_loss, …}}) to `path`.
pub fn training_curves(path: &Path, trainlog: &Map<String, Value>, kind: CurveKind) -> Result<()> {
    render(path, trainlog, kind, SIZE)?.write_png(path)
}

/// The picture of [`training_curves`] at any size (`path` names it in errors).
pub fn render(
    path: &Path,
    trainlog: &Map<String, Value>,
    kind: CurveKind,
    (w, h): (usize, usize),
) -> Result<Canvas> {
    let loss = vec![
        Line {
            label: "train".into(),
            points: series(trainlog, "train_loss", 1.0),
            colour: BLUE,
            dashed: true,
        },
        Line {
            label: "validation".into(),
            points: series(trainlog, "val_loss", 1.0),
            colour: ORANGE,
            dashed: false,
        },
    ];
    let (title, metrics) = kind.metrics();
    let mut lines = Vec::new();
    for (split, dashed) in [("train", true), ("val", false)] {
        for &(key, label, factor, colour) in &metrics {
            let name = if dashed { "train" } else { "validation" };
            lines.push(Line {
                label: format!("{label} {name}"),
                points: series(trainlog, &format!("{split}_{key}"), factor),
                colour,
                dashed,
            });
        }
    }
    let best = best_epoch(trainlog, kind);
    let best_label = best.map(|(e, v)| {
        let m = if kind == CurveKind::Panoptic {
            "PQ"
        } else {
            "mIoU"
        };
        format!("kept: epoch {e} (val {m} {v:.1})")
    });
    let mut canvas = Canvas::new(w, h);
    canvas.draw(path, |root| {
        root.fill(&WHITE)?;
        let (left, right) = root.split_horizontally(w as u32 / 2);
        panel(&left, "Loss", "loss", &loss, best, None, false)?;
        panel(
            &right,
            title,
            "%",
            &lines,
            best,
            best_label.as_deref(),
            true,
        )
    })?;
    Ok(canvas)
}

/// One panel: title, axes ("epoch", `y_desc`), the lines with markers, the best epoch and the legend.
fn panel(
    area: &DrawingArea<BitMapBackend, plotters::coord::Shift>,
    title: &str,
    y_desc: &str,
    lines: &[Line],
    best: Option<(i64, f64)>,
    best_label: Option<&str>,
    percent: bool,
) -> Drawn {
    let all = lines.iter().flat_map(|l| l.points.iter());
    let (e0, e1) = all
        .clone()
        .fold((i64::MAX, i64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    // No epoch yet: epochs 0..1. One epoch: its neighbours on either side, so that its points stand in the
    // middle of the panel rather than on the y axis.
    let (e0, e1) = if e0 > e1 {
        (0, 1)
    } else if e0 == e1 {
        (e0 - 1, e1 + 1)
    } else {
        (e0, e1)
    };
    let top = all.map(|p| p.1).fold(0.0f64, f64::max);
    let y1 = if percent {
        ((top * 1.1 / 10.0).ceil() * 10.0).clamp(10.0, 100.0)
    } else if top > 0.0 {
        top * 1.1
    } else {
        1.0 // no (positive) loss yet: a readable 0..1 axis
    };
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FAMILY, 22))
        .margin(14)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(e0..e1, 0.0..y1)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(y_desc)
        .x_labels(((e1 - e0 + 1) as usize).min(12))
        .y_labels(6)
        .label_style((FAMILY, 15))
        .axis_desc_style((FAMILY, 16))
        .light_line_style(RGBColor(235, 235, 235))
        .bold_line_style(RGBColor(215, 215, 215))
        .draw()?;
    for l in lines.iter().filter(|l| !l.points.is_empty()) {
        let style = rgb(l.colour).stroke_width(2);
        // The legend's sample (coordinates relative to the legend's anchor): one stroke for validation, two short
        // ones (a dash) for training.
        let dashed = l.dashed;
        let legend = move |(x, y): (i32, i32)| {
            let stroke = |a: i32, b: i32| PathElement::new(vec![(a, 0), (b, 0)], style);
            if dashed {
                EmptyElement::at((x, y)) + stroke(0, 9) + stroke(15, 24)
            } else {
                EmptyElement::at((x, y)) + stroke(0, 24) + stroke(0, 24)
            }
        };
        if l.dashed {
            chart
                .draw_series(DashedLineSeries::new(l.points.clone(), 8, 5, style))?
                .label(&l.label)
                .legend(legend);
        } else {
            chart
                .draw_series(LineSeries::new(l.points.clone(), style))?
                .label(&l.label)
                .legend(legend);
        }
        chart.draw_series(l.points.iter().map(|&p| Circle::new(p, 3, style.filled())))?;
    }
    if let Some((e, v)) = best {
        let style = rgb(GREY).stroke_width(1);
        let line =
            chart.draw_series(DashedLineSeries::new(vec![(e, 0.0), (e, y1)], 3, 4, style))?;
        if let Some(label) = best_label {
            line.label(label).legend(move |(x, y)| {
                PathElement::new(vec![(x + 12, y - 7), (x + 12, y + 7)], style)
            });
            chart.draw_series([Circle::new((e, v), 6, rgb(GREY).stroke_width(2))])?;
        }
    }
    let drawn: Vec<&Line> = lines.iter().filter(|l| !l.points.is_empty()).collect();
    if drawn.is_empty() {
        // A run stopped before its first epoch ended: say so instead of an empty legend.
        let (w, h) = area.dim_in_pixel();
        area.draw(&Text::new(
            "no finished epoch yet",
            (w as i32 / 2 - 80, h as i32 / 2),
            (FAMILY, 16).into_font().color(&rgb(GREY)),
        ))?;
        return Ok(());
    }
    let entries = drawn.len() + best_label.is_some() as usize;
    let corner = legend_corner(&drawn, (e0, e1), y1, entries, area.dim_in_pixel().1);
    chart
        .configure_series_labels()
        .position(corner)
        .label_font((FAMILY, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(160, 160, 160))
        .draw()?;
    Ok(())
}

/// Where in the plot the legend box (`entries` rows) would hide the fewest of the lines' points: a corner
/// (upper right first on ties, then lower right, upper left, lower left) or the middle of a side. The box is estimated in fractions of
/// the plot: about 40 % of its width, and 18 pixels a row plus a margin of a panel `height` pixels high
/// (less the caption and the x labels, about 110 pixels).
fn legend_corner(
    lines: &[&Line],
    (e0, e1): (i64, i64),
    y1: f64,
    entries: usize,
    height: u32,
) -> SeriesLabelPosition {
    let plot_h = (height as f64 - 110.0).max(1.0);
    let box_h = ((entries as f64 * 18.0 + 16.0) / plot_h).min(1.0);
    let box_w = 0.4;
    let span = (e1 - e0).max(1) as f64;
    let points: Vec<(f64, f64)> = lines
        .iter()
        .flat_map(|l| l.points.iter())
        .map(|&(e, v)| ((e - e0) as f64 / span, v / y1))
        .collect();
    // Each place: the box's lowest and highest y, and whether it sits on the right.
    let (low, middle, high) = (0.0, 0.5 - box_h / 2.0, 1.0 - box_h);
    let places = [
        (SeriesLabelPosition::UpperRight, high, true),
        (SeriesLabelPosition::LowerRight, low, true),
        (SeriesLabelPosition::UpperLeft, high, false),
        (SeriesLabelPosition::LowerLeft, low, false),
        (SeriesLabelPosition::MiddleRight, middle, true),
        (SeriesLabelPosition::MiddleLeft, middle, false),
    ];
    let mut best = (usize::MAX, SeriesLabelPosition::UpperRight);
    for (place, y0, right) in places {
        let hidden = points
            .iter()
            .filter(|&&(x, y)| {
                let in_x = if right { x >= 1.0 - box_w } else { x <= box_w };
                in_x && y >= y0 && y <= y0 + box_h
            })
            .count();
        if hidden < best.0 {
            best = (hidden, place);
        }
    }
    best.1
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn log(kind: CurveKind) -> Map<String, Value> {
        let mut m = Map::new();
        for e in 1..=6 {
            let x = e as f64;
            let entry = match kind {
                CurveKind::Panoptic => json!({"train_loss": 3.0 / x, "val_loss": 3.2 / x,
                    "train_SQ": 0.5, "train_RQ": 0.1 * x / 6.0, "train_PQ": 0.05 * x,
                    "val_SQ": 0.6, "val_RQ": 0.2, "val_PQ": if e == 4 { 0.4 } else { 0.1 }}),
                _ => json!({"train_loss": 2.0 / x, "val_loss": 2.1 / x,
                    "train_accuracy": 10.0 * x, "val_accuracy": 9.0 * x,
                    "train_IoU": 5.0 * x, "val_IoU": if e == 4 || e == 5 { 40.0 } else { 5.0 }}),
            };
            m.insert(e.to_string(), entry);
        }
        m
    }

    #[test]
    fn best_epoch_follows_each_training_loop() {
        // Semantic and pixel sets keep the last of equal maxima (epochs 4 and 5), panoptic the first.
        assert_eq!(
            best_epoch(&log(CurveKind::Semantic), CurveKind::Semantic),
            Some((5, 40.0))
        );
        assert_eq!(
            best_epoch(&log(CurveKind::Panoptic), CurveKind::Panoptic).map(|b| b.0),
            Some(4)
        );
        assert_eq!(best_epoch(&Map::new(), CurveKind::Semantic), None);
    }

    #[test]
    fn every_kind_renders_with_text() {
        for kind in [
            CurveKind::Semantic,
            CurveKind::PixelSet,
            CurveKind::Panoptic,
        ] {
            let c = render(Path::new("curves.png"), &log(kind), kind, (600, 300)).unwrap();
            // The panel titles sit in the top 40 rows.
            super::super::assert_readable(&format!("{kind:?} curves"), &c, (600, 300), 0..40);
        }
        // An empty log (a run with no finished epoch) still gives a picture, which says so in the middle of
        // each panel.
        let c = render(
            Path::new("curves.png"),
            &Map::new(),
            CurveKind::Semantic,
            (600, 300),
        )
        .unwrap();
        for x0 in [0, 300] {
            // Grey text pixels (not the black axes, not the light grid) right of the y axis.
            let text = (x0 + 90..x0 + 260)
                .flat_map(|x| (130..170).map(move |y| (x, y)))
                .filter(|&(x, y)| c.get(x, y).iter().all(|&v| (40..160).contains(&v)))
                .count();
            assert!(text > 20, "panel at x {x0}: no message ({text} pixels)");
        }
    }

    fn line(points: Vec<(i64, f64)>) -> Line {
        Line {
            label: "l".into(),
            points,
            colour: BLUE,
            dashed: false,
        }
    }

    #[test]
    fn the_legend_goes_where_it_hides_fewest_points() {
        use SeriesLabelPosition::*;
        let at = |pts: Vec<Vec<(i64, f64)>>, entries| {
            let lines: Vec<Line> = pts.into_iter().map(line).collect();
            let refs: Vec<&Line> = lines.iter().collect();
            legend_corner(&refs, (1, 10), 100.0, entries, 450)
        };
        let falling: Vec<(i64, f64)> = (1..=10).map(|e| (e, 100.0 / e as f64)).collect();
        let rising: Vec<(i64, f64)> = (1..=10).map(|e| (e, 9.0 * e as f64)).collect();
        let flat = |v: f64| (1..=10).map(|e| (e, v)).collect::<Vec<_>>();
        // A falling loss leaves the upper right free, a rising metric the lower right.
        assert!(matches!(at(vec![falling], 2), UpperRight));
        assert!(matches!(at(vec![rising], 2), LowerRight));
        // Flat lines high and low leave the middle.
        assert!(matches!(at(vec![flat(95.0), flat(5.0)], 3), MiddleRight));
        // A metric that rises then stays high on the right and a low flat line: the upper left.
        let plateau: Vec<(i64, f64)> = (1..=10)
            .map(|e| (e, if e < 4 { 50.0 } else { 92.0 }))
            .collect();
        assert!(matches!(
            at(vec![plateau, flat(10.0), flat(50.0)], 3),
            UpperLeft
        ));
    }

    #[test]
    fn one_epoch_stands_inside_the_panel() {
        let mut m = Map::new();
        m.insert(
            "1".into(),
            serde_json::json!({"train_loss": 2.9, "val_loss": 3.1, "train_IoU": 3.0, "val_IoU": 2.0}),
        );
        let c = render(
            Path::new("curves.png"),
            &m,
            CurveKind::Semantic,
            (1200, 450),
        )
        .unwrap();
        // The validation loss's orange marker is drawn away from the y axis (at the left edge of the plot, about
        // x = 78), in the middle of the panel's plot area.
        let orange = (200..420)
            .flat_map(|x| (40..200).map(move |y| (x, y)))
            .filter(|&(x, y)| c.get(x, y) == ORANGE)
            .count();
        assert!(
            orange > 10,
            "no validation marker inside the plot ({orange} pixels)"
        );
    }
}
