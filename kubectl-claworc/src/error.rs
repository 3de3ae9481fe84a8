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

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad flags or values: exit 2.
    #[error("{0}")]
    Invalid(String),
    /// Something does not exist: exit 3.
    #[error("{0}")]
    NotFound(String),
    /// Something exists already: exit 4.
    #[error("{0}")]
    AlreadyExists(String),
    /// RBAC said no: exit 5.
    #[error("{0}")]
    Forbidden(String),
    /// Anything else: exit 1.
    #[error("{0}")]
    Other(String),
}

impl Error {
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }
    pub fn not_found(msg: impl Into<String>) -> Self {
        Error::NotFound(msg.into())
    }
    pub fn other(msg: impl Into<String>) -> Self {
        Error::Other(msg.into())
    }

    /// The process exit code.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Other(_) => 1,
            Error::Invalid(_) => 2,
            Error::NotFound(_) => 3,
            Error::AlreadyExists(_) => 4,
            Error::Forbidden(_) => 5,
        }
    }

    /// The message on one line (inner newlines folded).
    pub fn one_line(&self) -> String {
        self.to_string().split_whitespace().collect::<Vec<_>>().join(" ")
    }

    /// Prefixes the message with what was being done (`context: message`).
    pub fn context(self, what: impl std::fmt::Display) -> Self {
        let f = |m: String| format!("{what}: {m}");
        match self {
            Error::Invalid(m) => Error::Invalid(f(m)),
            Error::NotFound(m) => Error::NotFound(f(m)),
            Error::AlreadyExists(m) => Error::AlreadyExists(f(m)),
            Error::Forbidden(m) => Error::Forbidden(f(m)),
            Error::Other(m) => Error::Other(f(m)),
        }
    }

    /// Appends `tail` to the message.
    pub fn context_suffix(self, tail: &str) -> Self {
        match self {
            Error::Invalid(m) => Error::Invalid(m + tail),
            Error::NotFound(m) => Error::NotFound(m + tail),
            Error::AlreadyExists(m) => Error::AlreadyExists(m + tail),
            Error::Forbidden(m) => Error::Forbidden(m + tail),
            Error::Other(m) => Error::Other(m + tail),
        }
    }

    /// Maps a kube error, naming the object (`what`, e.g. `deployment "dev" in namespace "a"`).
    pub fn kube(e: kube::Error, what: impl std::fmt::Display) -> Self {
        match &e {
            kube::Error::Api(s) => match s.code {
                404 => Error::NotFound(format!("{what} not found")),
                409 => Error::AlreadyExists(format!("{what} already exists ({})", s.message)),
                403 if s.message.contains("exceeded quota") => Error::Forbidden(format!(
                    "{what}: {} (a ResourceQuota refuses it: see `kubectl describe resourcequota`)",
                    s.message
                )),
                403 => Error::Forbidden(format!(
                    "{what}: forbidden: {} (ask a cluster admin for the RBAC permission, or use another --context)",
                    s.message
                )),
                401 => Error::Other(format!(
                    "{what}: Unauthorized: the credentials of the kubeconfig were rejected (expired or revoked token?)"
                )),
                422 | 400 => Error::Invalid(format!("{what}: {}", s.message)),
                _ => Error::Other(format!("{what}: {} ({})", s.message, s.code)),
            },
            kube::Error::Service(_) | kube::Error::HyperError(_) => Error::Other(format!(
                "{what}: cannot reach the API server ({}): check the kubeconfig's server, the network, and `kubectl cluster-info`",
                chain(&e)
            )),
            kube::Error::Auth(_) => Error::Other(format!(
                "{what}: cannot get credentials from the kubeconfig ({}): check its user entry (token, certificate or exec plugin)",
                chain(&e)
            )),
            _ => Error::Other(format!("{what}: {}", chain(&e))),
        }
    }

    /// Maps an I/O error on `path`.
    pub fn io(e: std::io::Error, path: &std::path::Path) -> Self {
        Error::Other(format!("{}: {e}", path.display()))
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
            Error::AlreadyExists("a".into()),
            Error::Forbidden("a".into()),
        ];
        let codes: Vec<i32> = all.iter().map(Error::exit_code).collect();
        assert_eq!(codes, vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn one_line() {
        assert_eq!(Error::other("a\n  b").one_line(), "a b");
        assert_eq!(Error::invalid("x").context("create").to_string(), "create: x");
    }
}
