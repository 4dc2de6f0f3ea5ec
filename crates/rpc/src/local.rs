//! Reaching a daemon that runs on this machine from its repo, as the daemons' CLIs do: the
//! running daemon writes its API address to `REPO/api` and an admin token to `REPO/token`.

use std::path::Path;

use crate::{ApiInfo, RpcClient};

/// The address in `repo/api` (`/ip4/HOST/tcp/PORT/http`); an error naming `process` and how to
/// start it if there is none.
pub fn running_api(repo: &Path, process: &str) -> Result<String, String> {
    std::fs::read_to_string(repo.join("api"))
        .map(|api| api.trim().to_string())
        .map_err(|_| {
            format!(
                "no running {process} found in {} (no api file): start it with `{process} run`",
                repo.display()
            )
        })
}

/// A client of a daemon: the connection string in the environment variable `env` if set, else
/// the repo's `api` and `token` files.
pub fn local_client(env: &str, repo: &Path, process: &str) -> Result<RpcClient, String> {
    if let Ok(text) = std::env::var(env) {
        let info = ApiInfo::parse(&text).map_err(|e| format!("{env}: {e}"))?;
        return Ok(RpcClient::from_api_info(&info));
    }
    let mut info = ApiInfo::parse(&running_api(repo, process)?).map_err(|e| e.to_string())?;
    let token = repo.join("token");
    info.token = match crate::token::read_private(&token) {
        Ok(text) => Some(text.trim().to_string()),
        Err(crate::TokenError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            None
        }
        Err(e) => return Err(e.to_string()),
    };
    Ok(RpcClient::from_api_info(&info))
}
