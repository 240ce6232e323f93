//! The SVG chart: ops/s of every configuration as a grouped horizontal bar chart, written by
//! hand (no plotting dependency).
//!
//! One bar per configuration. The first axis that varies among mode, shards, threads and
//! procs picks the bar's color (the legend); the other varying fields name the group; fields
//! equal in every configuration go into the subtitle once instead of into every label.

use std::fmt::Write as _;

use super::process::{Config, Measured};
use super::report::Axis;

const WIDTH: f64 = 960.0;
const BAR: f64 = 16.0;
const BAR_GAP: f64 = 3.0;
const GROUP_GAP: f64 = 12.0;
const TOP: f64 = 92.0;
/// Room right of the longest bar for its value label.
const VALUE_ROOM: f64 = 80.0;
/// A rough width of one character of the 12px labels, to size the label column.
const CHAR_WIDTH: f64 = 7.0;
const COLORS: [&str; 6] = [
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#b07aa1",
];

/// A grouped horizontal bar chart of ops/s per configuration, titled `title`.
pub fn svg(results: &[Measured], title: &str) -> String {
    let varies = |axis: Axis| {
        let first = results.first().map(|m| axis.value(&m.config).0);
        results
            .iter()
            .any(|m| Some(axis.value(&m.config).0) != first)
    };
    let series_axis = [Axis::Mode, Axis::Shards, Axis::Threads, Axis::Procs]
        .into_iter()
        .find(|a| varies(*a));
    let workloads_vary = results
        .iter()
        .any(|m| Some(m.config.workload) != results.first().map(|f| f.config.workload));

    // The series: distinct values of the series axis, ordered.
    let mut series: Vec<(usize, String)> = match series_axis {
        Some(a) => results.iter().map(|m| a.value(&m.config)).collect(),
        None => Vec::new(),
    };
    series.sort();
    series.dedup();
    let color_of = |c: &Config| {
        let i = series_axis
            .and_then(|a| series.iter().position(|s| s.0 == a.value(c).0))
            .unwrap_or(0);
        COLORS[i % COLORS.len()]
    };

    // Groups, in order of first appearance, each with its bars in series order.
    let label_of = |c: &Config| {
        let mut parts = Vec::new();
        if workloads_vary {
            parts.push(c.workload.to_string());
        }
        for axis in [Axis::Shards, Axis::Procs, Axis::Threads, Axis::Mode] {
            if Some(axis) != series_axis && varies(axis) {
                parts.push(format!("{}={}", axis.name(), axis.value(c).1));
            }
        }
        if parts.is_empty() {
            "all".to_owned()
        } else {
            parts.join(" ")
        }
    };
    let mut groups: Vec<(String, Vec<&Measured>)> = Vec::new();
    for m in results {
        let label = label_of(&m.config);
        match groups.iter_mut().find(|g| g.0 == label) {
            Some(g) => g.1.push(m),
            None => groups.push((label, vec![m])),
        }
    }
    if let Some(a) = series_axis {
        for g in &mut groups {
            g.1.sort_by_key(|m| a.value(&m.config).0);
        }
    }

    let mut constants: Vec<String> = Vec::new();
    if let (false, Some(first)) = (workloads_vary, results.first()) {
        constants.push(format!("workload={}", first.config.workload));
    }
    for axis in [Axis::Shards, Axis::Procs, Axis::Threads, Axis::Mode] {
        if let (false, Some(first)) = (varies(axis), results.first()) {
            constants.push(format!("{}={}", axis.name(), axis.value(&first.config).1));
        }
    }

    let longest = groups
        .iter()
        .map(|g| g.0.chars().count())
        .max()
        .unwrap_or(3);
    let x0 = 16.0 + (longest as f64 * CHAR_WIDTH).max(60.0) + 12.0;
    let plot_w = WIDTH - x0 - VALUE_ROOM;
    let max = results
        .iter()
        .map(Measured::ops_per_sec)
        .fold(0.0, f64::max);
    let (step, axis_max) = ticks(max);
    let x_of = |v: f64| x0 + plot_w * v / axis_max;

    let groups_h: f64 = groups
        .iter()
        .map(|g| g.1.len() as f64 * (BAR + BAR_GAP) - BAR_GAP)
        .sum::<f64>()
        + GROUP_GAP * groups.len().saturating_sub(1) as f64;
    let plot_bottom = TOP + groups_h + 8.0;
    let height = plot_bottom + 56.0;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        s,
        r##"<rect width="100%" height="100%" fill="#ffffff"/>
<text x="16" y="26" font-size="17" font-weight="bold">{}</text>
<text x="16" y="46" fill="#555555">{}</text>"##,
        esc(title),
        esc(&if constants.is_empty() {
            "higher is better".to_owned()
        } else {
            format!("{}; higher is better", constants.join(", "))
        })
    );

    // Legend.
    if let Some(a) = series_axis {
        let mut x = 16.0;
        for (i, (_, value)) in series.iter().enumerate() {
            let label = format!("{}={}", a.name(), value);
            let _ = writeln!(
                s,
                r#"<rect x="{x}" y="58" width="12" height="12" fill="{}"/><text x="{}" y="68.5">{}</text>"#,
                COLORS[i % COLORS.len()],
                x + 17.0,
                esc(&label)
            );
            x += 17.0 + label.chars().count() as f64 * CHAR_WIDTH + 20.0;
        }
    }

    // Grid and ticks.
    let mut v = 0.0;
    while v <= axis_max * (1.0 + 1e-9) {
        let x = x_of(v);
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{plot_bottom}" stroke="#e3e3e3"/>
<line x1="{x:.1}" y1="{plot_bottom}" x2="{x:.1}" y2="{}" stroke="#333333"/>
<text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"##,
            TOP - 6.0,
            plot_bottom + 5.0,
            plot_bottom + 19.0,
            short(v)
        );
        v += step;
    }
    let _ = writeln!(
        s,
        r##"<line x1="{x0:.1}" y1="{plot_bottom}" x2="{:.1}" y2="{plot_bottom}" stroke="#333333"/>
<line x1="{x0:.1}" y1="{}" x2="{x0:.1}" y2="{plot_bottom}" stroke="#333333"/>
<text x="{:.1}" y="{}" text-anchor="middle">operations acknowledged per second (all processes)</text>"##,
        x_of(axis_max),
        TOP - 6.0,
        x0 + plot_w / 2.0,
        plot_bottom + 40.0
    );

    // Bars.
    let mut y = TOP;
    for (label, bars) in &groups {
        let h = bars.len() as f64 * (BAR + BAR_GAP) - BAR_GAP;
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end" dominant-baseline="middle">{}</text>"#,
            x0 - 8.0,
            y + h / 2.0,
            esc(label)
        );
        for m in bars {
            let w = (x_of(m.ops_per_sec()) - x0).max(0.5);
            let _ = writeln!(
                s,
                r#"<rect x="{x0:.1}" y="{y:.1}" width="{w:.1}" height="{BAR}" fill="{}"><title>{}: {:.0} ops/s</title></rect>
<text x="{:.1}" y="{:.1}" dominant-baseline="middle">{}</text>"#,
                color_of(&m.config),
                esc(&m.config.to_string()),
                m.ops_per_sec(),
                x0 + w + 4.0,
                y + BAR / 2.0,
                thousands(m.ops_per_sec())
            );
            y += BAR + BAR_GAP;
        }
        y += GROUP_GAP - BAR_GAP;
    }
    s.push_str("</svg>\n");
    s
}

/// The smallest tick step of 1, 2 or 5 times a power of ten that cuts `0..max` into at most
/// eight intervals, and the axis end: the first multiple of the step at or above `max`.
fn ticks(max: f64) -> (f64, f64) {
    if !(max.is_finite() && max > 0.0) {
        return (1.0, 1.0);
    }
    let raw = max / 8.0;
    let pow = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * pow)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * pow);
    (step, (max / step).ceil() * step)
}

/// `2500` as `2.5k`, `3000000` as `3M`.
fn short(v: f64) -> String {
    let (n, unit) = if v >= 1e6 {
        (v / 1e6, "M")
    } else if v >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    let text = format!("{n:.1}");
    format!("{}{unit}", text.strip_suffix(".0").unwrap_or(&text))
}

/// `12345.6` as `12,346`.
fn thousands(v: f64) -> String {
    let digits = format!("{:.0}", v.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::{Mode, Workload};

    fn m(workload: Workload, shards: usize, mode: Mode, ops: u64) -> Measured {
        Measured {
            config: Config {
                workload,
                shards,
                procs: 8,
                threads: 1,
                mode,
            },
            ops,
            seconds: 1.0,
            store: shardkv::ShardStats {
                commits: ops,
                writes: ops,
                max_group: 1,
                ..Default::default()
            },
        }
    }

    fn sample() -> Vec<Measured> {
        let mut v = Vec::new();
        for w in [Workload::Hot, Workload::Striped, Workload::Inserts] {
            for shards in [1, 8] {
                for mode in [Mode::PerWrite, Mode::Group] {
                    v.push(m(
                        w,
                        shards,
                        mode,
                        1000 * shards as u64 + mode as u64 * 7000,
                    ));
                }
            }
        }
        v
    }

    /// Checks that every tag is closed in order and that text holds no bare `<` or `&`.
    fn assert_well_formed(svg: &str) {
        let mut stack: Vec<String> = Vec::new();
        let mut rest = svg;
        while let Some(open) = rest.find('<') {
            let text = &rest[..open];
            assert!(!text.contains('>'), "stray '>' in {text:?}");
            for (i, _) in text.match_indices('&') {
                let entity = &text[i..];
                assert!(
                    ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"]
                        .iter()
                        .any(|e| entity.starts_with(e)),
                    "bare '&' in {text:?}"
                );
            }
            let close = rest[open..].find('>').expect("unclosed tag") + open;
            let tag = &rest[open + 1..close];
            assert!(!tag.contains('<'), "'<' inside tag {tag:?}");
            assert_eq!(
                tag.matches('"').count() % 2,
                0,
                "unbalanced quotes in {tag:?}"
            );
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(
                    stack.pop().as_deref(),
                    Some(name.trim()),
                    "mismatched </{name}>"
                );
            } else if !tag.ends_with('/') {
                let name = tag.split_whitespace().next().expect("tag name");
                stack.push(name.to_owned());
            }
            rest = &rest[close + 1..];
        }
        assert!(rest.trim().is_empty());
        assert!(stack.is_empty(), "unclosed: {stack:?}");
    }

    #[test]
    fn chart_is_well_formed_and_labels_every_bar() {
        let results = sample();
        let svg = svg(&results, "contention <test> & more");
        assert_well_formed(&svg);
        assert!(svg.starts_with("<svg "));
        assert!(svg.contains("contention &lt;test&gt; &amp; more"));
        // Colors by mode, groups by workload and shards; the constant axes in the subtitle.
        assert!(svg.contains(">mode=per-write</text>") && svg.contains(">mode=group</text>"));
        for w in ["hot", "striped", "inserts"] {
            for s in [1, 8] {
                assert!(svg.contains(&format!(">{w} shards={s}</text>")), "{w} {s}");
            }
        }
        assert!(svg.contains("procs=8, threads=1"));
        assert_eq!(svg.matches("<rect x=").count(), results.len() + 2); // bars + legend
        for r in &results {
            assert!(svg.contains(&format!(">{}</text>", thousands(r.ops_per_sec()))));
            assert!(svg.contains(&format!("<title>{}: ", r.config)));
        }
        assert!(svg.contains("operations acknowledged per second"));
    }

    #[test]
    fn chart_of_one_configuration_has_no_legend() {
        let one = [m(Workload::Hot, 1, Mode::Group, 1234)];
        let svg = svg(&one, "one");
        assert_well_formed(&svg);
        assert!(svg.contains(">all</text>"));
        assert!(svg.contains(">1,234</text>"));
        assert_eq!(svg.matches("<rect x=").count(), 1);
        assert_well_formed(&super::svg(&[], "empty"));
    }

    #[test]
    fn ticks_are_round_and_cover_the_maximum() {
        assert_eq!(ticks(9000.0), (2000.0, 10000.0));
        assert_eq!(ticks(1234.0), (200.0, 1400.0));
        assert_eq!(ticks(11206.0), (2000.0, 12000.0));
        assert_eq!(ticks(0.0), (1.0, 1.0));
        assert_eq!(short(2500.0), "2.5k");
        assert_eq!(short(3_000_000.0), "3M");
        assert_eq!(short(40.0), "40");
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
    }
}
