//! `create` and `delete`.
use crate::cli::{CreateArgs, DeleteArgs, Global};
use crate::context::Ctx;
use crate::error::{Error, Result};

pub fn dry_run(_global: &Global, _args: &CreateArgs) -> Result<()> {
    Err(Error::other("create --dry-run: not implemented yet"))
}
pub async fn create(_ctx: &Ctx, _args: &CreateArgs) -> Result<()> {
    Err(Error::other("create: not implemented yet"))
}
pub async fn delete(_ctx: &Ctx, _args: &DeleteArgs) -> Result<()> {
    Err(Error::other("delete: not implemented yet"))
}
