//! The plugin's error type. Each variant has a distinct exit code and prints as one
//! line that names what is wrong and how to fix it.
//!
//! | exit | meaning |
//! |---|---|
//! | 1 | any other failure (network, API server, local files) |
//! | 2 | invalid input (flags, names, values) |
//! | 3 | not found |
//! | 4 | already exists |
//! | 5 | forbidden: RBAC or a quota refuses it, or the SSH host key is refused (the message says which) |

/// `Result` with the plugin's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, as far as the exit code is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Bad flags or values.
    Invalid,
    /// Something does not exist.
    NotFound,
    /// Something exists already.
    AlreadyExists,
    /// RBAC, a quota or the SSH host-key check said no.
    Forbidden,
    /// Anything else.
    Other,
}

impl Kind {
    /// The process exit code: the one place the documented codes are written.
    pub fn exit_code(self) -> i32 {
        match self {
            Kind::Other => 1,
            Kind::Invalid => 2,
            Kind::NotFound => 3,
            Kind::AlreadyExists => 4,
            Kind::Forbidden => 5,
        }
    }
}

/// The underlying error an [`Error`] came from.
pub type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The plugin's one error type: a [`Kind`] (the exit code), the one-line message the
/// user reads (naming what is wrong and the fix), and the error it came from.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    kind: Kind,
    message: String,
    #[source]
    source: Option<Source>,
}

impl Error {
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into(), source: None }
    }
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::new(Kind::Invalid, msg)
    }
    pub fn not_found(msg: impl Into<String>) -> Self {
        Error::new(Kind::NotFound, msg)
    }
    pub fn already_exists(msg: impl Into<String>) -> Self {
        Error::new(Kind::AlreadyExists, msg)
    }
    pub fn forbidden(msg: impl Into<String>) -> Self {
        Error::new(Kind::Forbidden, msg)
    }
    pub fn other(msg: impl Into<String>) -> Self {
        Error::new(Kind::Other, msg)
    }

    /// Keeps `source` as the error this one came from (the message is unchanged).
    pub fn with_source(mut self, source: impl Into<Source>) -> Self {
        self.source = Some(source.into());
        self
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The process exit code.
    pub fn exit_code(&self) -> i32 {
        self.kind.exit_code()
    }

    /// The message on one line (inner newlines folded).
    pub fn one_line(&self) -> String {
        self.message.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    /// The same kind and source with another message.
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }

    /// Prefixes the message with what was being done (`context: message`).
    pub fn context(mut self, what: impl std::fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }

    /// Appends `tail` to the message.
    pub fn context_suffix(mut self, tail: &str) -> Self {
        self.message.push_str(tail);
        self
    }

    /// Maps a kube error, naming the object (`what`, e.g. `deployment "dev" in namespace "a"`).
    pub fn kube(e: kube::Error, what: impl std::fmt::Display) -> Self {
        let (kind, message) = match &e {
            kube::Error::Api(s) => match s.code {
                404 => (Kind::NotFound, format!("{what} not found")),
                409 => (Kind::AlreadyExists, format!("{what} already exists ({})", s.message)),
                403 if s.message.contains("exceeded quota") => (
                    Kind::Forbidden,
                    format!("{what}: {} (a ResourceQuota refuses it: see `kubectl describe resourcequota`)", s.message),
                ),
                403 => (
                    Kind::Forbidden,
                    format!(
                        "{what}: forbidden: {} (ask a cluster admin for the RBAC permission, or use another --context)",
                        s.message
                    ),
                ),
                401 => (
                    Kind::Other,
                    format!(
                        "{what}: Unauthorized: the credentials of the kubeconfig were rejected (expired or revoked token?)"
                    ),
                ),
                422 | 400 => (Kind::Invalid, format!("{what}: {}", s.message)),
                _ => (Kind::Other, format!("{what}: {} ({})", s.message, s.code)),
            },
            kube::Error::Service(_) | kube::Error::HyperError(_) => (
                Kind::Other,
                format!(
                    "{what}: cannot reach the API server ({}): check the kubeconfig's server, the network, and `kubectl cluster-info`",
                    chain(&e)
                ),
            ),
            kube::Error::Auth(_) => (
                Kind::Other,
                format!(
                    "{what}: cannot get credentials from the kubeconfig ({}): check its user entry (token, certificate or exec plugin)",
                    chain(&e)
                ),
            ),
            _ => (Kind::Other, format!("{what}: {}", chain(&e))),
        };
        Error::new(kind, message).with_source(e)
    }

    /// Maps an I/O error on `path`.
    pub fn io(e: std::io::Error, path: &std::path::Path) -> Self {
        Error::other(format!("{}: {e}", path.display())).with_source(e)
    }
}

/// An error and its sources, `outer: inner: root`, without repeats.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        src = s.source();
    }
    out
}

/// Is this kube error a 404?
pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Is this kube error a 409?
pub fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_distinct() {
        let all = [
            Error::other("a"),
            Error::invalid("a"),
            Error::not_found("a"),
            Error::already_exists("a"),
            Error::forbidden("a"),
        ];
        let codes: Vec<i32> = all.iter().map(Error::exit_code).collect();
        assert_eq!(codes, vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn one_line() {
        assert_eq!(Error::other("a\n  b").one_line(), "a b");
        assert_eq!(Error::invalid("x").context("create").to_string(), "create: x");
    }

    #[test]
    fn keeps_its_source_and_kind() {
        use std::error::Error as _;
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
        let e = Error::io(io, std::path::Path::new("/x")).context("reading").context_suffix("; fix it");
        assert_eq!(e.to_string(), "reading: /x: denied; fix it");
        assert_eq!(e.source().map(|s| s.to_string()).as_deref(), Some("denied"));
        assert_eq!(e.with_message("m").exit_code(), 1);
    }
}
