//! `hf://` sources of `get` and `cat`: the Hub client the flags and the environment make,
//! and the snapshot each source lists.

use std::error::Error;

use haul::{HfError, HfPath, HubClient, KeySelection, Snapshot};
use indicatif::HumanBytes;

use crate::run::UsageError;

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct HfArgs {
    /// The Hugging Face token for hf:// sources, sent to the Hub only. Default: HF_TOKEN,
    /// else the token file `hf auth login` writes (HF_TOKEN_PATH, HF_HOME). HF_ENDPOINT
    /// moves the Hub (a mirror)
    #[arg(long, value_name = "TOKEN")]
    hf_token: Option<String>,
}

impl HfArgs {
    /// The client of the Hub.
    pub(crate) fn client(&self, net: &crate::net::NetArgs) -> Result<HubClient, Box<dyn Error>> {
        let client = HubClient::from_env()?
            .http(haul::HttpClient::new(net.http()?))
            .retry(net.retry());
        Ok(match &self.hf_token {
            Some(token) => client.token(token.as_str()),
            None => client,
        })
    }
}

/// The files of `source` (`hf://…`) that `select` takes, at the commit its revision names
/// now, said on stderr. A malformed path, or a gated repo without a token, is a usage error.
pub(crate) fn snapshot(
    client: &HubClient,
    source: &str,
    select: &KeySelection,
) -> Result<Snapshot, Box<dyn Error>> {
    let path = HfPath::parse(source).map_err(|e| UsageError(e.to_string()))?;
    let snapshot = client.snapshot(&path).map_err(|e| -> Box<dyn Error> {
        match e {
            HfError::Denied { status: 401, .. } => UsageError(e.to_string()).into(),
            other => other.into(),
        }
    })?;
    let snapshot = snapshot.select(select);
    if !crate::run::output().quiet {
        tell!(
            "{path} at {}: {} files, {}",
            &snapshot.commit()[..12],
            snapshot.files().len(),
            HumanBytes(snapshot.total_bytes())
        );
    }
    Ok(snapshot)
}
