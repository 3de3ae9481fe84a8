//! `gen-certs`: a private CA and a serving certificate for the webhook Service.
//!
//! The apiserver reaches the webhook as `https://NAME.NS.svc:443`, so the
//! serving certificate names the Service in every form it can be addressed by;
//! `--ip` adds IP SANs for a webhook reached by URL (the local test cluster).
//! The CA certificate goes into the webhook configurations' `caBundle`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};

/// File names written by [`write`].
pub const CA_CERT: &str = "ca.crt";
pub const TLS_CERT: &str = "tls.crt";
pub const TLS_KEY: &str = "tls.key";

/// How long the CA is valid.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How long the serving certificate is valid (rotate with `certs/bootstrap` or cert-manager).
pub const SERVING_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);

/// What to certify.
#[derive(Debug, Clone)]
pub struct Request {
    /// The webhook Service's name.
    pub service: String,
    /// The Service's namespace.
    pub namespace: String,
    /// Extra IP SANs.
    pub ips: Vec<IpAddr>,
}

impl Request {
    /// The DNS names the serving certificate holds.
    pub fn dns_names(&self) -> Vec<String> {
        let (s, ns) = (&self.service, &self.namespace);
        vec![s.clone(), format!("{s}.{ns}"), format!("{s}.{ns}.svc"), format!("{s}.{ns}.svc.cluster.local")]
    }
}

/// A generated CA and serving certificate, PEM-encoded.
#[derive(Debug, Clone)]
pub struct Generated {
    pub ca_cert_pem: String,
    pub tls_cert_pem: String,
    pub tls_key_pem: String,
}

fn random_serial() -> Result<SerialNumber> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new().fill(&mut bytes).map_err(|_| anyhow::anyhow!("no system randomness"))?;
    bytes[0] &= 0x7f; // a positive INTEGER
    bytes[0] |= 0x01; // of full length
    Ok(SerialNumber::from_slice(&bytes))
}

fn validity(params: &mut CertificateParams, lifetime: Duration) {
    let now = SystemTime::now();
    // Tolerate clocks a little behind ours.
    params.not_before = (now - Duration::from_secs(3600)).into();
    params.not_after = (now + lifetime).into();
}

/// Generates a fresh CA (ECDSA P-256) and a serving certificate signed by it.
pub fn generate(req: &Request) -> Result<Generated> {
    anyhow::ensure!(
        claworc_contract::settings::dns_label(&req.service),
        "--service {:?} is not a valid Service name (lower-case letters, digits and '-')",
        req.service
    );
    anyhow::ensure!(
        claworc_contract::settings::dns_label(&req.namespace),
        "--namespace {:?} is not a valid namespace name (lower-case letters, digits and '-')",
        req.namespace
    );

    let ca_key = KeyPair::generate().context("generating the CA key")?;
    let mut ca = CertificateParams::default();
    ca.distinguished_name = DistinguishedName::new();
    ca.distinguished_name.push(DnType::CommonName, format!("claworc webhook CA ({}.{})", req.service, req.namespace));
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    ca.serial_number = Some(random_serial()?);
    validity(&mut ca, CA_VALIDITY);
    let ca_cert = ca.self_signed(&ca_key).context("signing the CA certificate")?;
    let issuer = Issuer::new(ca, ca_key);

    let key = KeyPair::generate().context("generating the serving key")?;
    let mut leaf = CertificateParams::default();
    leaf.distinguished_name = DistinguishedName::new();
    leaf.distinguished_name.push(DnType::CommonName, format!("{}.{}.svc", req.service, req.namespace));
    leaf.subject_alt_names = req
        .dns_names()
        .into_iter()
        .map(|n| Ok(SanType::DnsName(n.try_into()?)))
        .collect::<Result<Vec<_>, rcgen::Error>>()?;
    leaf.subject_alt_names.extend(req.ips.iter().map(|ip| SanType::IpAddress(*ip)));
    leaf.is_ca = IsCa::ExplicitNoCa;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.use_authority_key_identifier_extension = true;
    leaf.serial_number = Some(random_serial()?);
    validity(&mut leaf, SERVING_VALIDITY);
    let cert = leaf.signed_by(&key, &issuer).context("signing the serving certificate")?;

    Ok(Generated { ca_cert_pem: ca_cert.pem(), tls_cert_pem: cert.pem(), tls_key_pem: key.serialize_pem() })
}

/// Paths of the files written by [`write`].
#[derive(Debug, Clone)]
pub struct Written {
    pub ca_cert: PathBuf,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
}

/// Writes `ca.crt`, `tls.crt` and `tls.key` into `dir` (created 0700; the key 0600).
/// Each file is written to a temporary name and renamed, so a server watching
/// them never reads half a file.
pub fn write(dir: &Path, generated: &Generated) -> Result<Written> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("restricting {}", dir.display()))?;
    let written = Written { ca_cert: dir.join(CA_CERT), tls_cert: dir.join(TLS_CERT), tls_key: dir.join(TLS_KEY) };
    // The key first: a watcher that sees the new certificate finds its key in place.
    write_atomically(&written.tls_key, generated.tls_key_pem.as_bytes(), 0o600)?;
    write_atomically(&written.tls_cert, generated.tls_cert_pem.as_bytes(), 0o644)?;
    write_atomically(&written.ca_cert, generated.ca_cert_pem.as_bytes(), 0o644)?;
    Ok(written)
}

fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    file.write_all(contents).and_then(|()| file.sync_all()).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_every_form_of_the_service() {
        let req = Request { service: "claworc-webhook".into(), namespace: "claworc-system".into(), ips: vec![] };
        assert_eq!(
            req.dns_names(),
            [
                "claworc-webhook",
                "claworc-webhook.claworc-system",
                "claworc-webhook.claworc-system.svc",
                "claworc-webhook.claworc-system.svc.cluster.local"
            ]
        );
    }

    #[test]
    fn refuses_bad_names() {
        let req = Request { service: "Bad_Name".into(), namespace: "ns".into(), ips: vec![] };
        assert!(generate(&req).is_err());
    }
}
