//! BENCHMARKS.md.

use std::fmt::Write as _;
use std::process::Command;

use crate::cases::Group;
use crate::Options;

/// The report: machine, method, a table per group, and the goals checked against this run's figures.
pub fn markdown(opts: &Options, groups: &[Group]) -> String {
    let mut s = String::from("# Benchmarks\n\n");
    let _ = writeln!(
        s,
        "Written by `scripts/bench.sh` (the `bench` crate). Re-run it to refresh; figures from another run or machine \
         are not comparable with these.\n"
    );
    s.push_str("## Machine\n\n");
    for (what, value) in machine() {
        let _ = writeln!(s, "- {what}: {value}");
    }
    let _ = writeln!(
        s,
        "\n## Method\n\nEach case is a whole process: fork, exec, the request on stdin, the reply read, wait. The cases \
         of a table run round-robin, one call of each in turn, {} calls per case after {} untimed warm-up rounds, so \
         that drift on a noisy machine touches every case alike. Figures are the median and the 99th percentile (nearest \
         rank) in microseconds; ratios divide medians of the same table, taken in the same run. The lab's cases are whole \
         `netlab` commands, five rounds each, with a pause of {} s after each `down`: the kernel removes a lab's \
         namespaces after `down` returns, and without the pause that work would land on the next round's `up`. \
         netlab's own time is each round's `up` less the plugin processes of that same round; its goal divides the \
         median of that by the median plugin time.\n",
        opts.iterations,
        opts.iterations.min(5),
        crate::cases::SETTLE.as_secs()
    );
    for g in groups {
        let _ = writeln!(s, "## {}\n\n{}.\n", g.title, g.note);
        if !g.rows.is_empty() {
            let base = g
                .rows
                .iter()
                .find(|(n, _)| *n == g.baseline)
                .map(|(_, s)| s.median_us())
                .unwrap_or(0.0);
            let _ = writeln!(
                s,
                "| case | median µs | p99 µs | × {} |\n| --- | ---: | ---: | ---: |",
                g.baseline
            );
            for (name, samples) in &g.rows {
                let ratio = if base > 0.0 {
                    samples.median_us() / base
                } else {
                    0.0
                };
                let _ = writeln!(
                    s,
                    "| {name} | {:.0} | {:.0} | {ratio:.2} |",
                    samples.median_us(),
                    samples.p99_us()
                );
            }
            s.push('\n');
        }
        for why in &g.skipped {
            let _ = writeln!(s, "Not measured: {why}.\n");
        }
    }
    s.push_str(&goals(groups));
    s
}

fn median(groups: &[Group], title: &str, case: &str) -> Option<f64> {
    groups
        .iter()
        .find(|g| g.title == title)
        .and_then(|g| g.rows.iter().find(|(n, _)| n == case))
        .map(|(_, s)| s.median_us())
        .filter(|m| *m > 0.0)
}

fn goals(groups: &[Group]) -> String {
    let mut s = String::from("## Goals\n\n| goal | measured | verdict |\n| --- | --- | --- |\n");
    let add = |case| median(groups, "IPAM ADD", case);
    let alone = |case| median(groups, crate::cases::ALONE, case);
    let floor = alone(crate::cases::C_FLOOR);
    let i2_alone = alone("index2ip (static)");
    let i2 = add("index2ip (static)");
    let reference = add("reference static");
    let original = add(crate::cases::ORIGINAL);
    let mut row = |goal: &str, measured: Option<f64>, limit: f64, at_most: bool, unit: &str| {
        let _ = match measured {
            Some(m) => {
                let met = if at_most { m <= limit } else { m >= limit };
                let verdict = if met {
                    "met".to_owned()
                } else if at_most {
                    format!("missed by {:.0}%", (m / limit - 1.0) * 100.0)
                } else {
                    format!("missed: {:.0}% of the goal", m / limit * 100.0)
                };
                writeln!(s, "| {goal} | {m:.2}{unit} | {verdict} |")
            }
            None => writeln!(s, "| {goal} | not measured | - |"),
        };
    };
    row(
        "index2ip ADD at most 1.5 × the C floor (measured alone with it)",
        i2_alone.zip(floor).map(|(a, b)| a / b),
        1.5,
        true,
        " ×",
    );
    row(
        "index2ip ADD at least 10 × faster than reference static",
        reference.zip(i2).map(|(a, b)| a / b),
        10.0,
        false,
        " ×",
    );
    row(
        "index2ip ADD at least 10 × faster than the original (Go)",
        original.zip(i2).map(|(a, b)| a / b),
        10.0,
        false,
        " ×",
    );
    let shim = |case: &str| median(groups, "cni-shim overhead", case);
    for size in ["small config", "1 MiB config"] {
        let direct = shim(&format!("direct, {size}"));
        let through = shim(&format!("cni-shim, {size}"));
        let bash = shim(&format!("bash shim, {size}"));
        let added = through.zip(direct).map(|(t, d)| (t - d) / 1000.0);
        row(
            &format!("cni-shim adds at most 0.3 ms ({size})"),
            added,
            0.3,
            true,
            " ms",
        );
        let ratio = bash
            .zip(direct)
            .zip(through)
            .map(|((b, d), t)| (b - d) / (t - d).max(1.0));
        row(
            &format!("cni-shim adds at least 20 times less than the bash shim ({size})"),
            ratio,
            20.0,
            false,
            " ×",
        );
    }
    if let Some(g) = groups
        .iter()
        .find(|g| g.title.starts_with("cni-shim queries"))
    {
        for (name, samples) in &g.rows {
            row(
                &format!("{name} well under a second ({})", g.title),
                Some(samples.median_us() / 1000.0),
                500.0,
                true,
                " ms",
            );
        }
    }
    row(
        "the default lab's up, check and down within a few seconds (5 s), emulated",
        median(
            groups,
            "Lab",
            "run (up, status, check, down), the default lab",
        )
        .map(|us| us / 1e6),
        5.0,
        true,
        " s",
    );
    let real =
        |case: &str| median(groups, "Lab on the real control plane", case).map(|us| us / 1e6);
    row(
        "the default lab's up on the real control plane, to every pod networked, under 30 s",
        real("up, to every DaemonSet's pods running"),
        30.0,
        true,
        " s",
    );
    row(
        "the default lab's down on the real control plane under 10 s",
        real("down"),
        10.0,
        true,
        " s",
    );
    for size in [12, 48, 200] {
        let lab = |case: String| median(groups, "Lab", &case);
        let own = lab(format!("netlab's own time within up, {size} pods"));
        let plugins = lab(format!("plugin processes within up, {size} pods"));
        row(
            &format!("netlab's own overhead at {size} pods at most 10% over its plugin calls"),
            own.zip(plugins).map(|(o, p)| o / p * 100.0),
            10.0,
            true,
            " %",
        );
    }
    s
}

fn machine() -> Vec<(&'static str, String)> {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cmd = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_else(|| "unknown".into())
    };
    vec![
        ("processor", format!("{cpu}, {cores} cores")),
        ("kernel", cmd("uname", &["-sr"])),
        ("compiler", cmd("rustc", &["--version"])),
        (
            "reference plugins",
            cmd(
                "dpkg-query",
                &[
                    "-W",
                    "-f=containernetworking-plugins ${Version}",
                    "containernetworking-plugins",
                ],
            ),
        ),
    ]
}
