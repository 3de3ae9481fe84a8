//! `rotate-keys`.
use crate::cli::RotateArgs;
use crate::context::Ctx;
use crate::error::{Error, Result};
pub async fn rotate(_ctx: &Ctx, _args: &RotateArgs) -> Result<()> {
    Err(Error::other("rotate-keys: not implemented yet"))
}
