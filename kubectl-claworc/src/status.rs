//! `list` and `status`.
use crate::cli::{ListArgs, StatusArgs};
use crate::context::Ctx;
use crate::error::{Error, Result};
pub async fn list(_ctx: &Ctx, _args: &ListArgs) -> Result<()> {
    Err(Error::other("list: not implemented yet"))
}
pub async fn status(_ctx: &Ctx, _args: &StatusArgs) -> Result<()> {
    Err(Error::other("status: not implemented yet"))
}
