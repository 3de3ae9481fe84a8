//! Input parsing and checks shared by every command: durations (`90d`, `1h30m`), names
//! (DNS-1123 labels) and resource quantities. A leaf: it imports only the error type, so
//! the command line on top and the commands below can both use it.

use std::time::Duration;

use crate::error::{Error, Result};

/// Checks a DNS-1123 label (names of instances, tenants, namespaces, volumes).
pub fn validate_name(field: &str, v: &str) -> Result<()> {
    if claworc_contract::settings::dns_label(v) {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{field} {v:?} is not a valid name: use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit"
        )))
    }
}

/// A Kubernetes quantity of bytes: digits, optional fraction, optional suffix.
pub fn is_quantity(s: &str) -> bool {
    const SUFFIXES: &[&str] = &["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "k", "M", "G", "T", "P", "E"];
    let digits_end = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, suffix) = s.split_at(digits_end);
    !num.is_empty()
        && num.chars().next().is_some_and(|c| c.is_ascii_digit())
        && num.matches('.').count() <= 1
        && SUFFIXES.contains(&suffix)
}

/// Parses `90d`, `720h`, `30m`, `45s`, `1h30m` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let bad = || format!("invalid duration {s:?}: use a number with a unit, e.g. 90s, 30m, 720h, 90d");
    if s.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total: u64 = 0;
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit = match c {
            'd' => 86_400,
            'h' => 3_600,
            'm' => 60,
            's' => 1,
            _ => return Err(bad()),
        };
        let n: u64 = num.parse().map_err(|_| bad())?;
        total = n.checked_mul(unit).and_then(|v| total.checked_add(v)).ok_or_else(bad)?;
        num.clear();
    }
    if !num.is_empty() {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

/// Formats a duration the way [`parse_duration`] reads it (largest units first).
pub fn format_duration(d: Duration) -> String {
    let mut s = d.as_secs();
    if s == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, n) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if s >= n {
            out.push_str(&format!("{}{unit}", s / n));
            s %= n;
        }
    }
    out
}

/// `12d`, `5h`, `3m`, `10s`: the largest unit.
pub fn short_age(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s >= 86_400 => format!("{}d", s / 86_400),
        s if s >= 3_600 => format!("{}h", s / 3_600),
        s if s >= 60 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90d").unwrap(), Duration::from_secs(90 * 86_400));
        assert_eq!(parse_duration("720h").unwrap(), Duration::from_secs(720 * 3_600));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5_400));
        assert_eq!(parse_duration("45").unwrap(), Duration::from_secs(45));
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("10x").is_err());
        assert!(parse_duration("10").is_ok());
        assert!(parse_duration("5m3").is_err());
        assert_eq!(format_duration(Duration::from_secs(5_400)), "1h30m");
        assert_eq!(format_duration(Duration::from_secs(90 * 86_400)), "90d");
    }
}
