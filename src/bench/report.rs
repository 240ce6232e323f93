//! Results as text: the markdown table, the CSV file, and ratio tables that compare
//! configurations measured side by side in one run (on a shared machine, a ratio from one run
//! is worth more than any absolute number).

use std::fmt::Write as _;

use super::process::{Config, Measured};

/// The markdown table of every configuration, in sweep order.
pub fn table(results: &[Measured]) -> String {
    let mut out = String::from(
        "| workload | shards | procs | threads | mode | ops | seconds | ops/s | commits | \
         mean group | lock wait per commit (us) | verified |\n\
         |---|--:|--:|--:|---|--:|--:|--:|--:|--:|--:|---|\n",
    );
    for m in results {
        let c = &m.config;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {:.2} | {:.0} | {} | {:.2} | {:.0} | yes |",
            c.workload,
            c.shards,
            c.procs,
            c.threads,
            c.mode,
            m.ops,
            m.seconds,
            m.ops_per_sec(),
            m.store.commits,
            m.mean_group(),
            m.lock_wait_per_commit_us(),
        );
    }
    out
}

/// The CSV file: one row per configuration, raw sums next to the derived rates.
pub fn csv(results: &[Measured]) -> String {
    let mut out = String::from(
        "workload,shards,procs,threads,mode,ops,seconds,ops_per_sec,commits,writes,\
         mean_group,max_group,lock_wait_us,lock_wait_per_commit_us,verified\n",
    );
    for m in results {
        let c = &m.config;
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{:.4},{:.1},{},{},{:.3},{},{},{:.1},true",
            c.workload,
            c.shards,
            c.procs,
            c.threads,
            c.mode,
            m.ops,
            m.seconds,
            m.ops_per_sec(),
            m.store.commits,
            m.store.writes,
            m.mean_group(),
            m.store.max_group,
            m.store.lock_wait_us,
            m.lock_wait_per_commit_us(),
        );
    }
    out
}

/// A sweep axis along which two configurations can be compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Axis {
    /// Shard count.
    Shards,
    /// Commit mode.
    Mode,
    /// Threads per process.
    Threads,
    /// Worker processes.
    Procs,
}

impl Axis {
    /// Every axis, in the order comparisons are printed.
    pub const ALL: [Axis; 4] = [Axis::Shards, Axis::Mode, Axis::Threads, Axis::Procs];

    /// The axis's name, as the flag says it.
    pub fn name(self) -> &'static str {
        match self {
            Axis::Shards => "shards",
            Axis::Mode => "mode",
            Axis::Threads => "threads",
            Axis::Procs => "procs",
        }
    }

    /// The value of this axis in `c`, as text, and a key that orders it (per-write before
    /// group; counts by size).
    pub fn value(self, c: &Config) -> (usize, String) {
        match self {
            Axis::Shards => (c.shards, c.shards.to_string()),
            Axis::Mode => (c.mode as usize, c.mode.to_string()),
            Axis::Threads => (c.threads, c.threads.to_string()),
            Axis::Procs => (c.procs, c.procs.to_string()),
        }
    }

    /// `c` with this axis set to a fixed value, so configurations that differ only along
    /// the axis compare equal.
    fn erase(self, mut c: Config) -> Config {
        match self {
            Axis::Shards => c.shards = 0,
            Axis::Mode => c.mode = super::Mode::PerWrite,
            Axis::Threads => c.threads = 0,
            Axis::Procs => c.procs = 0,
        }
        c
    }

    /// The other fields of `c`, as a table row's leading cells.
    fn other_cells(self, c: &Config) -> Vec<String> {
        let mut cells = vec![c.workload.to_string()];
        for axis in [Axis::Shards, Axis::Procs, Axis::Threads, Axis::Mode] {
            if axis != self {
                cells.push(axis.value(c).1);
            }
        }
        cells
    }

    fn other_headers(self) -> Vec<&'static str> {
        let mut h = vec!["workload"];
        for axis in [Axis::Shards, Axis::Procs, Axis::Threads, Axis::Mode] {
            if axis != self {
                h.push(axis.name());
            }
        }
        h
    }
}

/// For every axis with more than one value: ops/s of each value divided by ops/s of the
/// smallest value (per-write, for modes), between configurations equal in everything else.
/// One markdown table per pair of values; empty if nothing varies.
pub fn ratios(results: &[Measured]) -> String {
    let mut out = String::new();
    for axis in Axis::ALL {
        let mut values: Vec<(usize, String)> =
            results.iter().map(|m| axis.value(&m.config)).collect();
        values.sort();
        values.dedup();
        let Some((base_key, base)) = values.first().cloned() else {
            continue;
        };
        for (key, value) in &values[1..] {
            let mut rows = String::new();
            for m in results.iter().filter(|m| axis.value(&m.config).0 == *key) {
                let peer = results.iter().find(|b| {
                    axis.value(&b.config).0 == base_key
                        && axis.erase(b.config) == axis.erase(m.config)
                });
                let Some(b) = peer else { continue };
                let mut cells = axis.other_cells(&m.config);
                cells.push(format!("{:.0}", b.ops_per_sec()));
                cells.push(format!("{:.0}", m.ops_per_sec()));
                cells.push(format!("{:.2}x", m.ops_per_sec() / b.ops_per_sec()));
                let _ = writeln!(rows, "| {} |", cells.join(" | "));
            }
            if rows.is_empty() {
                continue;
            }
            let name = axis.name();
            let mut headers = axis.other_headers();
            let base_col = format!("ops/s {name}={base}");
            let value_col = format!("ops/s {name}={value}");
            let ratio_col = format!("{value} ÷ {base}");
            headers.extend([base_col.as_str(), value_col.as_str(), ratio_col.as_str()]);
            let align: Vec<&str> = headers
                .iter()
                .map(|h| {
                    if matches!(*h, "workload" | "mode") {
                        "---"
                    } else {
                        "--:"
                    }
                })
                .collect();
            let _ = write!(
                out,
                "\n{name}={value} vs {name}={base} (ops/s ratio, same run):\n\n| {} |\n|{}|\n{rows}",
                headers.join(" | "),
                align.join("|")
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::{Mode, Workload};
    use shardkv::ShardStats;

    fn m(workload: Workload, shards: usize, threads: usize, mode: Mode, ops: u64) -> Measured {
        Measured {
            config: Config {
                workload,
                shards,
                procs: 8,
                threads,
                mode,
            },
            ops,
            seconds: 2.0,
            store: ShardStats {
                commits: ops / 2,
                writes: ops,
                lock_wait_us: ops * 100,
                max_group: 4,
                ..ShardStats::default()
            },
        }
    }

    fn sample() -> Vec<Measured> {
        vec![
            m(Workload::Hot, 1, 1, Mode::PerWrite, 2000),
            m(Workload::Hot, 1, 1, Mode::Group, 6000),
            m(Workload::Hot, 8, 1, Mode::PerWrite, 3000),
            m(Workload::Hot, 8, 1, Mode::Group, 9000),
        ]
    }

    #[test]
    fn table_has_one_row_per_result_with_derived_columns() {
        let t = table(&sample());
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2 + 4);
        assert!(lines[0].starts_with("| workload | shards |"));
        assert!(lines[0].ends_with("| verified |"));
        assert_eq!(
            lines[2],
            "| hot | 1 | 8 | 1 | per-write | 2000 | 2.00 | 1000 | 1000 | 2.00 | 200 | yes |"
        );
        // Every row has as many cells as the header.
        let cells = |l: &str| l.matches('|').count();
        assert!(lines.iter().all(|l| cells(l) == cells(lines[0])));
    }

    #[test]
    fn csv_rows_match_the_header() {
        let c = csv(&sample());
        let lines: Vec<&str> = c.lines().collect();
        assert_eq!(lines.len(), 5);
        let fields = lines[0].split(',').count();
        assert!(lines.iter().all(|l| l.split(',').count() == fields));
        assert!(lines[4].starts_with("hot,8,8,1,group,9000,2.0000,4500.0,4500,9000,2.000,"));
    }

    #[test]
    fn ratios_compare_only_configurations_equal_in_all_else() {
        let r = ratios(&sample());
        assert!(r.contains("shards=8 vs shards=1"), "{r}");
        assert!(
            r.contains("| hot | 8 | 1 | per-write | 1000 | 1500 | 1.50x |"),
            "{r}"
        );
        assert!(
            r.contains("| hot | 8 | 1 | group | 3000 | 4500 | 1.50x |"),
            "{r}"
        );
        assert!(r.contains("mode=group vs mode=per-write"), "{r}");
        assert!(
            r.contains("| hot | 1 | 8 | 1 | 1000 | 3000 | 3.00x |"),
            "{r}"
        );
        assert!(
            r.contains("| hot | 8 | 8 | 1 | 1500 | 4500 | 3.00x |"),
            "{r}"
        );
        // Threads and procs did not vary: no tables for them.
        assert!(!r.contains("threads="), "{r}");
        assert!(!r.contains("procs="), "{r}");
        assert_eq!(ratios(&sample()[..1]), "");
    }
}
