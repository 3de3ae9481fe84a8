//! The plain objects of an instance.
use crate::error::{Error, Result};

/// Checks a DNS-1123 label (names of instances, tenants, namespaces).
pub fn validate_name(field: &str, v: &str) -> Result<()> {
    if claworc_contract::settings::dns_label(v) {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{field} {v:?} is not a valid name: use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit"
        )))
    }
}
