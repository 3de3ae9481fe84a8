//! kubectl-claworc
