//! `tenant create|kubeconfig|list|delete`.
use crate::cli::TenantCommand;
use crate::context::Ctx;
use crate::error::{Error, Result};
pub async fn run(_ctx: &Ctx, _cmd: TenantCommand) -> Result<()> {
    Err(Error::other("tenant: not implemented yet"))
}
