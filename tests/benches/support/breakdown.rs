//! Where a bench's time went: the mean per request of every histogram on a platform's admin
//! `/metrics` between two snapshots (the in-process services share one recorder). Shared by
//! the chat and fairness benches (`#[path]`: bench targets are separate crates).

#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;

/// Sum and count of every histogram series on the admin `/metrics` (the in-process services
/// share one recorder), keyed by `name{labels}`: the difference of two snapshots is where the
/// time of the requests between them went.
pub async fn histograms(http: &reqwest::Client, admin: &str) -> anyhow::Result<BTreeMap<String, (f64, f64)>> {
    let text = http.get(format!("{admin}/metrics")).send().await?.text().await?;
    let mut out: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    // Summaries' quantile lines are left out: their sum and count are what adds up.
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.contains("quantile=")) {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let Ok(value) = value.parse::<f64>() else { continue };
        let (name, labels) = series.split_once('{').map_or((series, ""), |(n, l)| (n, l));
        let key = |base: &str| if labels.is_empty() { base.to_owned() } else { format!("{base}{{{labels}") };
        if let Some(base) = name.strip_suffix("_sum") {
            out.entry(key(base)).or_default().0 = value;
        } else if let Some(base) = name.strip_suffix("_count") {
            out.entry(key(base)).or_default().1 = value;
        } else if name.starts_with("getlood_mindsdb_") && !name.ends_with("_bucket") {
            // Gauges (the MindsDB limit, its waiters): the value at the snapshot.
            out.insert(key(name), (value, f64::NAN));
        }
    }
    Ok(out)
}

/// Prints the mean of each histogram series between two snapshots (and the gauges at the
/// second), for the series that saw requests.
pub fn print_breakdown(phase: &str, before: &BTreeMap<String, (f64, f64)>, after: &BTreeMap<String, (f64, f64)>) {
    println!("  where the time went, {phase} (mean per request, all tenants):");
    for (series, (sum, count)) in after {
        if count.is_nan() {
            println!("    {series:<90} {sum:>9.1} (gauge)");
            continue;
        }
        let (s0, c0) = before.get(series).copied().unwrap_or((0.0, 0.0));
        let n = count - c0;
        if n >= 1.0 {
            println!("    {series:<90} {:>9.1} ms x {n}", (sum - s0) / n * 1000.0);
        }
    }
}
