//! claworc-webhook
