//! Reading a Prometheus text page the way an operator's dashboard does.

/// The value of one series, named as the page prints it (`name` or `name{label="v",...}`);
/// `None` when the page has no such line.
pub fn value(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// A metric summed over all its label sets (0 when absent).
pub fn sum(page: &str, name: &str) -> f64 {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.strip_prefix(name))
        .filter(|rest| rest.starts_with([' ', '{']))
        .filter_map(|rest| rest.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    #[test]
    fn series_are_found_by_their_exact_name_and_labels() {
        let page = "# HELP a_total A\n# TYPE a_total counter\na_total{k=\"x\"} 3\na_total{k=\"y\"} 4\na_total_more 9\nb 1.5\n";
        assert_eq!(super::value(page, "a_total{k=\"y\"}"), Some(4.0));
        assert_eq!(super::value(page, "a_total"), None);
        assert_eq!(super::value(page, "b"), Some(1.5));
        assert_eq!(super::sum(page, "a_total"), 7.0);
        assert_eq!(super::sum(page, "c"), 0.0);
    }
}
