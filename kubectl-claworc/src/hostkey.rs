//! Host-key checking for instance sshds: never trust on first use.
//!
//! The key the server presents is compared, in this order, with
//! 1. the local pin (`$XDG_CONFIG_HOME/claworc/known_hosts`, see the key store);
//! 2. if there is no pin, the Deployment's `claworc.io/host-key-fingerprint`
//!    annotation, written by the plugin when it made the host key. A match is
//!    pinned (and said so on stderr).
//!
//! Anything else is refused: a pin that does not match, or no pin and no
//! annotation (or one that does not match). After a deliberate host-key
//! rotation (`kubectl claworc rotate-keys NAME --host-key`, which updates the
//! annotation and this machine's pin together), other machines re-pin with
//! `--repin`, which accepts the key only if it matches the annotation.

use std::fmt;

use claworc_contract::annotations::HOST_KEY_FINGERPRINT;
use claworc_contract::names::SECRET_HOST_KEY_PUB;

/// What the client knows about the instance's host key before connecting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expectation {
    /// The instance, for messages (`namespace/name`).
    pub instance: String,
    /// The locally pinned fingerprint, if any.
    pub pin: Option<String>,
    /// The Deployment's `claworc.io/host-key-fingerprint` annotation, if any.
    pub annotation: Option<String>,
    /// `--repin`: replace a pin that differs, if the key matches the annotation.
    pub repin: bool,
}

/// What to do with a presented host key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Matches the local pin.
    Pinned,
    /// No usable pin, but the key matches the annotation: accept and pin it.
    PinFromAnnotation { fingerprint: String, replaced: Option<String> },
    /// Refused.
    Refused(HostKeyRefused),
}

/// Why a host key was refused; the message says what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostKeyRefused {
    pub instance: String,
    pub presented: String,
    pub reason: RefusedBecause,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefusedBecause {
    /// The local pin differs from the presented key.
    PinMismatch { pin: String, annotation_matches: bool },
    /// No pin and no annotation to check the key against.
    NothingToCheck,
    /// No pin, and the annotation differs from the presented key.
    AnnotationMismatch { annotation: String },
}

impl fmt::Display for HostKeyRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let HostKeyRefused { instance, presented, reason } = self;
        match reason {
            RefusedBecause::PinMismatch { pin, annotation_matches: true } => write!(
                f,
                "host key of {instance} changed: it presents {presented}, pinned is {pin}. It matches the \
                 Deployment's {HOST_KEY_FINGERPRINT}, so the key was probably rotated on purpose \
                 (kubectl claworc rotate-keys --host-key); if you know it was, re-pin with --repin"
            ),
            RefusedBecause::PinMismatch { pin, annotation_matches: false } => write!(
                f,
                "REFUSED: host key of {instance} changed: it presents {presented}, pinned is {pin}, and it \
                 does not match the Deployment's {HOST_KEY_FINGERPRINT} either. Someone may be \
                 intercepting the connection. After a deliberate rotation run \
                 `kubectl claworc rotate-keys NAME --host-key` (updates the annotation and the pin), \
                 then `--repin` on other machines"
            ),
            RefusedBecause::NothingToCheck => write!(
                f,
                "REFUSED: cannot verify the host key {presented} of {instance}: nothing is pinned locally and \
                 the Deployment has no {HOST_KEY_FINGERPRINT} annotation (claworc never trusts a key \
                 on first use). Set it with `kubectl claworc rotate-keys NAME --host-key`, or annotate the \
                 Deployment with the fingerprint of the Secret's {SECRET_HOST_KEY_PUB} \
                 (`ssh-keygen -lf`)"
            ),
            RefusedBecause::AnnotationMismatch { annotation } => write!(
                f,
                "REFUSED: host key of {instance} is {presented}, but the Deployment's \
                 {HOST_KEY_FINGERPRINT} says {annotation}. Someone may be intercepting the \
                 connection, or the annotation is stale: after a deliberate rotation run \
                 `kubectl claworc rotate-keys NAME --host-key`"
            ),
        }
    }
}

impl std::error::Error for HostKeyRefused {}

/// Decides on the presented fingerprint. Pure: pinning is the caller's job.
pub fn check(expect: &Expectation, presented: &str) -> Decision {
    let annotation_matches = expect.annotation.as_deref() == Some(presented);
    let refuse = |reason| {
        Decision::Refused(HostKeyRefused {
            instance: expect.instance.clone(),
            presented: presented.to_string(),
            reason,
        })
    };
    match (&expect.pin, &expect.annotation) {
        (Some(pin), _) if pin == presented => Decision::Pinned,
        (Some(pin), _) if expect.repin && annotation_matches => {
            Decision::PinFromAnnotation { fingerprint: presented.to_string(), replaced: Some(pin.clone()) }
        }
        (Some(pin), _) => refuse(RefusedBecause::PinMismatch { pin: pin.clone(), annotation_matches }),
        (None, None) => refuse(RefusedBecause::NothingToCheck),
        (None, Some(_)) if annotation_matches => {
            Decision::PinFromAnnotation { fingerprint: presented.to_string(), replaced: None }
        }
        (None, Some(annotation)) => refuse(RefusedBecause::AnnotationMismatch { annotation: annotation.clone() }),
    }
}

#[cfg(test)]
mod tests {
    use russh::keys::PublicKey;

    use super::*;

    const A: &str = "SHA256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "SHA256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn expect(pin: Option<&str>, annotation: Option<&str>, repin: bool) -> Expectation {
        Expectation {
            instance: "ns/box".into(),
            pin: pin.map(Into::into),
            annotation: annotation.map(Into::into),
            repin,
        }
    }

    #[test]
    fn a_matching_pin_is_trusted_whatever_the_annotation() {
        assert_eq!(check(&expect(Some(A), None, false), A), Decision::Pinned);
        assert_eq!(check(&expect(Some(A), Some(B), false), A), Decision::Pinned);
    }

    #[test]
    fn without_a_pin_the_annotation_decides_and_is_pinned() {
        assert_eq!(
            check(&expect(None, Some(A), false), A),
            Decision::PinFromAnnotation { fingerprint: A.into(), replaced: None }
        );
        let Decision::Refused(r) = check(&expect(None, Some(B), false), A) else { panic!() };
        assert!(matches!(r.reason, RefusedBecause::AnnotationMismatch { .. }));
        assert!(r.to_string().contains("rotate-keys NAME --host-key"), "{r}");
    }

    #[test]
    fn never_trusts_on_first_use() {
        let Decision::Refused(r) = check(&expect(None, None, false), A) else { panic!() };
        assert_eq!(r.reason, RefusedBecause::NothingToCheck);
        let Decision::Refused(_) = check(&expect(None, None, true), A) else { panic!("--repin must not TOFU") };
        assert!(r.to_string().contains("never trusts a key on first use"), "{r}");
    }

    #[test]
    fn a_changed_key_is_refused_and_repin_needs_the_annotation() {
        let Decision::Refused(r) = check(&expect(Some(A), Some(B), false), B) else { panic!() };
        assert_eq!(r.reason, RefusedBecause::PinMismatch { pin: A.into(), annotation_matches: true });
        assert!(r.to_string().contains("--repin"), "{r}");
        assert_eq!(
            check(&expect(Some(A), Some(B), true), B),
            Decision::PinFromAnnotation { fingerprint: B.into(), replaced: Some(A.into()) }
        );
        // --repin with an annotation that does not match: still refused.
        let Decision::Refused(r) = check(&expect(Some(A), Some(A), true), B) else { panic!() };
        assert!(r.to_string().contains("REFUSED"), "{r}");
        let Decision::Refused(_) = check(&expect(Some(A), None, true), B) else { panic!() };
    }

    #[test]
    fn fingerprints_look_like_ssh_keygen() {
        let key = PublicKey::from_openssh(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl test",
        )
        .unwrap();
        let fp = crate::keys::fingerprint(&key);
        assert!(fp.starts_with("SHA256:") && fp.len() == 50, "{fp}");
    }
}
