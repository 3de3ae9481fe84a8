//! The record of a tenant's kubeconfig tokens: when each was issued and when it
//! expires. Tokens from the TokenRequest API are not stored by the cluster, so
//! `tenant create|kubeconfig` writes this record into the annotation
//! `claworc.io/kubeconfig-tokens` of the tenant ServiceAccount (JSON, expired entries
//! dropped on every write). The tenant cannot read or change it (its Role has no
//! `serviceaccounts`), and `--rotate`, which deletes the ServiceAccount and so
//! revokes every token, drops the record with it. Pure: the times come in.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// One issued token (RFC 3339 UTC times).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub issued: String,
    pub expires: String,
}

impl TokenRecord {
    fn expires_at(&self) -> Option<Timestamp> {
        self.expires.parse().ok()
    }
}

/// The records of the annotation's value (nothing if absent or unreadable).
pub fn parse(annotation: Option<&str>) -> Vec<TokenRecord> {
    annotation.and_then(|a| serde_json::from_str(a).ok()).unwrap_or_default()
}

/// The tokens still valid at `now`, soonest expiry first.
pub fn valid(records: &[TokenRecord], now: Timestamp) -> Vec<TokenRecord> {
    let mut out: Vec<TokenRecord> =
        records.iter().filter(|r| r.expires_at().is_some_and(|e| e > now)).cloned().collect();
    out.sort_by_key(|r| r.expires_at());
    out
}

/// The annotation's new value: the valid records and `new`.
pub fn with(records: &[TokenRecord], new: TokenRecord, now: Timestamp) -> String {
    let mut all = valid(records, now);
    all.push(new);
    all.sort_by_key(|r| r.expires_at());
    serde_json::to_string(&all).expect("token records serialize")
}

/// Warnings for tokens that expire within `warn_before` of `now`, and for a tenant
/// with no valid token on record.
pub fn warnings(tenant: &str, records: &[TokenRecord], now: Timestamp, warn_before: Duration) -> Vec<String> {
    let valid = valid(records, now);
    let renew = format!("renew with `kubectl claworc tenant kubeconfig {tenant} --ttl 720h`");
    if valid.is_empty() {
        return vec![format!(
            "tenant {tenant}: no valid kubeconfig token on record (all expired, revoked by --rotate, or issued before claworc recorded expiries): {renew}"
        )];
    }
    valid
        .iter()
        .filter_map(|r| {
            let left = r.expires_at()?.as_second() - now.as_second();
            (left <= warn_before.as_secs() as i64).then(|| {
                format!(
                    "tenant {tenant}: a kubeconfig token (issued {}) expires in {} ({}): {renew} and replace it where it is used",
                    r.issued,
                    crate::input::short_age(Duration::from_secs(left.max(0) as u64)),
                    r.expires
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn rec(issued: &str, expires: &str) -> TokenRecord {
        TokenRecord { issued: issued.into(), expires: expires.into() }
    }

    #[test]
    fn records_drop_expired_and_sort_by_expiry() {
        let now = t("2026-11-26T18:00:00Z");
        let old = rec("2026-10-01T00:00:00Z", "2026-10-31T00:00:00Z");
        let long = rec("2026-11-26T17:00:00Z", "2026-12-26T17:00:00Z");
        let short = rec("2026-11-26T17:30:00Z", "2026-11-26T19:00:00Z");
        let value = with(&[old, long.clone()], short.clone(), now);
        let back = parse(Some(&value));
        assert_eq!(back, vec![short, long]);
        assert!(parse(Some("not json")).is_empty());
        assert!(parse(None).is_empty());
    }

    #[test]
    fn warns_before_expiry_and_when_none_is_left() {
        let now = t("2026-11-26T18:00:00Z");
        let long = rec("2026-11-26T17:00:00Z", "2026-12-26T17:00:00Z");
        let short = rec("2026-11-26T17:30:00Z", "2026-11-26T19:00:00Z");
        let week = Duration::from_secs(7 * 86_400);
        let w = warnings("team-a", &[long.clone(), short], now, week);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("expires in 1h") && w[0].contains("2026-11-26T19:00:00Z"), "{w:?}");
        assert!(w[0].contains("kubectl claworc tenant kubeconfig team-a"), "{w:?}");
        assert!(warnings("team-a", &[long], now, week).is_empty());
        let none = warnings("team-a", &[], now, week);
        assert!(none[0].contains("no valid kubeconfig token"), "{none:?}");
    }
}
