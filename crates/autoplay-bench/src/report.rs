//! Machine and version facts for the report header, and small statistics helpers.

use std::process::Command;

fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `date -u`, formatted.
pub fn now_utc() -> String {
    command_output("date", &["-u", "+%Y-%m-%d %H:%M:%S UTC"]).unwrap_or_else(|| "?".into())
}

/// The CPU model from /proc/cpuinfo.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "?".into())
}

/// Logical CPUs available to this process.
pub fn nproc() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

pub fn rustc_version() -> String {
    command_output("rustc", &["--version"]).unwrap_or_else(|| "?".into())
}

pub fn kernel() -> String {
    command_output("uname", &["-sr"]).unwrap_or_else(|| "?".into())
}

/// The versions of `names` resolved in the workspace's Cargo.lock.
pub fn crate_versions(workspace: &std::path::Path, names: &[&str]) -> Vec<(String, String)> {
    let lock = std::fs::read_to_string(workspace.join("Cargo.lock")).unwrap_or_default();
    let mut out = Vec::new();
    for name in names {
        let needle = format!("name = \"{name}\"\n");
        let mut versions: Vec<String> = lock
            .match_indices(&needle)
            .filter_map(|(i, _)| {
                let rest = &lock[i + needle.len()..];
                rest.lines()
                    .next()
                    .and_then(|l| l.strip_prefix("version = \""))
                    .map(|v| v.trim_end_matches('"').to_string())
            })
            .collect();
        versions.dedup();
        if !versions.is_empty() {
            out.push((name.to_string(), versions.join(", ")));
        }
    }
    out
}

/// Median, min and max of `values` (sorted copy).
pub fn median_min_max(values: &[f64]) -> (f64, f64, f64) {
    if values.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
    (mid, v[0], v[v.len() - 1])
}

/// The `q` quantile (0..=1) of sorted `values`, nearest rank (the default value,
/// zero, when there are none).
pub fn quantile<T: Copy + Default>(sorted: &[T], q: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// `1234567.8` → `1,234,568`.
pub fn thousands(x: f64) -> String {
    let n = x.round() as i64;
    let s = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

pub fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

/// The 1, 5 and 15 minute load averages from /proc/loadavg.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(", "))
        .unwrap_or_else(|| "?".into())
}

/// The short hash of the workspace's `HEAD`, with `+changes` when the work
/// tree differs from it outside `docs/benchmarks.md` (which an earlier part
/// of the same invocation may have just written; `?` without git).
pub fn git_commit(workspace: &std::path::Path) -> String {
    let dir = workspace.to_string_lossy();
    let Some(hash) = command_output("git", &["-C", &dir, "rev-parse", "--short", "HEAD"]) else {
        return "?".into();
    };
    let dirty = command_output(
        "git",
        &[
            "-C",
            &dir,
            "status",
            "--porcelain",
            "--untracked-files=no",
            "--",
            ".",
            ":!docs/benchmarks.md",
        ],
    )
    .is_some_and(|s| !s.is_empty());
    if dirty {
        format!("{hash}+changes")
    } else {
        hash
    }
}

/// One `## ` section of `docs/benchmarks.md`: its title and the text after its
/// heading line, up to the next `## ` heading (`###` subsections included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub title: String,
    pub body: String,
}

/// The `## ` sections of `doc`, in order (what comes before the first is the
/// header, which every run writes anew). Headings inside code fences do not count.
pub fn sections(doc: &str) -> Vec<Section> {
    let mut out: Vec<Section> = Vec::new();
    let mut in_fence = false;
    for line in doc.split_inclusive('\n') {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
        }
        if !in_fence && let Some(title) = line.strip_prefix("## ") {
            out.push(Section {
                title: title.trim().to_owned(),
                body: String::new(),
            });
        } else if let Some(section) = out.last_mut() {
            section.body.push_str(line);
        }
    }
    out
}

/// The section of `kept` for `title`: the same title, or, when the title was
/// reworded, the same number (`"4."`).
pub fn find_section<'a>(kept: &'a [Section], title: &str) -> Option<&'a Section> {
    let number = title.split_once(' ').map(|(n, _)| n);
    kept.iter().find(|s| s.title == title).or_else(|| {
        number.and_then(|n| {
            kept.iter()
                .find(|s| s.title.split_once(' ').map(|(m, _)| m) == Some(n))
        })
    })
}

/// The sections of the new document: `first`, then one per title of `titles`
/// in that order, from `fresh` when this run produced it, else kept from `old`
/// (found by [`find_section`], under the new title), else `missing(title)`;
/// and, apart, `old`'s sections that are none of these (kept at the end).
pub fn merge(
    first: Section,
    titles: &[&str],
    fresh: &[Section],
    old: &[Section],
    missing: impl Fn(&str) -> String,
) -> (Vec<Section>, Vec<Section>) {
    let mut used: Vec<&str> = vec![first.title.as_str()];
    let mut sections = Vec::with_capacity(titles.len());
    for &title in titles {
        let kept = find_section(old, title);
        if let Some(section) = kept {
            used.push(&section.title);
        }
        let body = if let Some(section) = fresh.iter().find(|s| s.title == title) {
            section.body.clone()
        } else if let Some(section) = kept {
            section.body.clone()
        } else {
            missing(title)
        };
        used.push(title);
        sections.push(Section {
            title: title.to_owned(),
            body,
        });
    }
    let others = old
        .iter()
        .filter(|s| !used.contains(&s.title.as_str()))
        .cloned()
        .collect();
    sections.insert(0, first.clone());
    (sections, others)
}

/// Writes the document: `header`, then `parts` in order, then any other
/// section of the old document (kept as it was).
pub fn assemble(header: &str, parts: &[Section], others: &[Section]) -> String {
    let mut doc = header.trim_end().to_owned();
    doc.push_str("\n\n");
    for section in parts.iter().chain(others) {
        doc.push_str("## ");
        doc.push_str(&section.title);
        doc.push_str("\n\n");
        doc.push_str(section.body.trim());
        doc.push_str("\n\n");
    }
    doc.truncate(doc.trim_end().len());
    doc.push('\n');
    doc
}

/// A positive count from the environment variable `name`, else `default`
/// (the benchmark's knobs: runs, rounds, posters).
pub(crate) fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "# Benchmarks\n\nintro\n\n## 1. One\n\nbody one\n\n### Sub\n\nmore\n\n\
                       ## 2. Two\n\n```sh\n## not a heading\n```\n\n## Other\n\nkept\n";

    #[test]
    fn splits_at_level_two_headings_outside_fences() {
        let s = sections(DOC);
        let titles: Vec<&str> = s.iter().map(|s| s.title.as_str()).collect();
        assert_eq!(titles, ["1. One", "2. Two", "Other"]);
        assert!(s[0].body.contains("### Sub\n\nmore"));
        assert!(s[1].body.contains("## not a heading"));
    }

    #[test]
    fn finds_a_reworded_section_by_its_number() {
        let s = sections(DOC);
        assert_eq!(find_section(&s, "2. Two, renamed").unwrap().title, "2. Two");
        assert!(find_section(&s, "3. Three").is_none());
    }

    #[test]
    fn a_run_replaces_only_its_own_sections() {
        let old = sections(DOC);
        let first = Section {
            title: "Machine".into(),
            body: "new machine\n".into(),
        };
        let fresh = [Section {
            title: "2. Two".into(),
            body: "fresh two\n".into(),
        }];
        let titles = ["1. One", "2. Two", "3. Three"];
        let (parts, others) = merge(first, &titles, &fresh, &old, |t| format!("missing {t}\n"));
        let bodies: Vec<&str> = parts.iter().map(|s| s.body.trim()).collect();
        assert_eq!(
            bodies,
            [
                "new machine",
                "body one\n\n### Sub\n\nmore",
                "fresh two",
                "missing 3. Three"
            ]
        );
        assert_eq!(others.len(), 1);
        assert_eq!(others[0].title, "Other");
        let doc = assemble("# Benchmarks", &parts, &others);
        assert!(
            doc.contains("## 1. One\n\nbody one\n\n### Sub\n\nmore\n\n## 2. Two\n\nfresh two\n")
        );
        assert!(doc.ends_with("## Other\n\nkept\n"));
    }

    #[test]
    fn reassembles_what_it_split() {
        let s = sections(DOC);
        let doc = assemble("# Benchmarks\n\nintro", &s[..2], &s[2..]);
        assert_eq!(doc, DOC);
    }
}
