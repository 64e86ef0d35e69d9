//! The shared files: `~/.aws/credentials` and `~/.aws/config`, their profiles, and a
//! profile's `credential_process`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::{Keys, var};

/// Where the shared files are: `AWS_SHARED_CREDENTIALS_FILE` and `AWS_CONFIG_FILE`, else
/// `~/.aws/credentials` and `~/.aws/config`.
#[derive(Debug, Clone)]
pub(crate) struct ProfileFiles {
    credentials: Option<PathBuf>,
    config: Option<PathBuf>,
}

/// One profile, merged from both files (the credentials file's keys win).
#[derive(Debug, Clone)]
pub(crate) struct Profile {
    pub(crate) name: String,
    values: BTreeMap<String, String>,
}

impl ProfileFiles {
    pub(crate) fn from_env() -> ProfileFiles {
        let home = var("HOME").map(PathBuf::from);
        let aws = |file: &str| home.as_ref().map(|h| h.join(".aws").join(file));
        ProfileFiles {
            credentials: var("AWS_SHARED_CREDENTIALS_FILE")
                .map(PathBuf::from)
                .or_else(|| aws("credentials")),
            config: var("AWS_CONFIG_FILE")
                .map(PathBuf::from)
                .or_else(|| aws("config")),
        }
    }

    /// The files, for messages.
    pub(crate) fn shown(&self) -> String {
        [&self.credentials, &self.config]
            .iter()
            .filter_map(|p| p.as_ref().map(|p| p.display().to_string()))
            .collect::<Vec<_>>()
            .join(" or ")
    }

    /// The profile `name`, when either file has it: `[name]` in the credentials file,
    /// `[profile name]` (or `[default]`) in the config file.
    pub(crate) fn profile(&self, name: &str) -> Option<Profile> {
        let read = |path: &Option<PathBuf>| {
            path.as_ref()
                .and_then(|p| std::fs::read_to_string(p).ok())
                .map(|text| sections(&text))
        };
        let from_config = read(&self.config).and_then(|mut s| {
            s.remove(&format!("profile {name}"))
                .or_else(|| (name == "default").then(|| s.remove("default")).flatten())
        });
        let from_credentials = read(&self.credentials).and_then(|mut s| s.remove(name));
        if from_config.is_none() && from_credentials.is_none() {
            return None;
        }
        let mut values = from_config.unwrap_or_default();
        values.extend(from_credentials.unwrap_or_default());
        Some(Profile {
            name: name.to_owned(),
            values,
        })
    }
}

/// An INI file's sections: `[name]` then `key = value` lines; `#` and `;` start comments.
/// Nested values (an indented block under `s3 =`) are skipped.
fn sections(text: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut all = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if line.starts_with([' ', '\t']) {
            continue;
        }
        let line = line.trim();
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
            all.entry(name.clone()).or_insert_with(BTreeMap::new);
            current = Some(name);
            continue;
        }
        if let (Some(section), Some((key, value))) = (&current, line.split_once('=')) {
            all.get_mut(section)
                .expect("section inserted above")
                .insert(key.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
    }
    all
}

impl Profile {
    fn get(&self, key: &str) -> Option<&str> {
        self.values
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// Its region.
    pub(crate) fn region(&self) -> Option<&str> {
        self.get("region")
    }

    /// Its `ca_bundle`: a PEM file of roots to trust besides the machine's.
    pub(crate) fn ca_bundle(&self) -> Option<&str> {
        self.get("ca_bundle")
    }

    /// Its `endpoint_url`.
    pub(crate) fn endpoint_url(&self) -> Option<&str> {
        self.get("endpoint_url")
    }

    /// Whether it names keys or a `credential_process`.
    pub(crate) fn has_credentials(&self) -> bool {
        self.static_keys().is_some() || self.get("credential_process").is_some()
    }

    fn static_keys(&self) -> Option<Keys> {
        Some(Keys {
            access_key: self.get("aws_access_key_id")?.to_owned(),
            secret_key: self.get("aws_secret_access_key")?.to_owned(),
            token: self.get("aws_session_token").map(str::to_owned),
            expires: None,
        })
    }

    /// Its keys, or what its `credential_process` prints (the AWS CLI's JSON: `Version` 1,
    /// `AccessKeyId`, `SecretAccessKey`, `SessionToken`, `Expiration`).
    pub(crate) fn load(&self) -> Result<Keys, String> {
        if let Some(keys) = self.static_keys() {
            return Ok(keys);
        }
        let Some(command) = self.get("credential_process") else {
            return Err("no keys or credential_process in it".to_owned());
        };
        let output = Command::new("sh")
            .arg("-c")
            .arg(command)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| format!("credential_process {command:?}: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "credential_process {command:?} exited with {}",
                output.status
            ));
        }
        super::remote::keys_from_json(&output.stdout, "SessionToken")
            .map_err(|e| format!("credential_process {command:?}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_read_as_the_aws_cli_writes_them() {
        let text = "# comment\n[default]\naws_access_key_id = A\n\n[profile prod]\nregion=eu-west-1\ns3 =\n  max_concurrent_requests = 20\n; other\nendpoint_url = http://h:1\n";
        let s = sections(text);
        assert_eq!(s["default"]["aws_access_key_id"], "A");
        assert_eq!(s["profile prod"]["region"], "eu-west-1");
        assert_eq!(s["profile prod"]["endpoint_url"], "http://h:1");
        assert!(!s["profile prod"].contains_key("max_concurrent_requests"));
    }
}
