//! Where a Hub token and endpoint come from, as huggingface_hub looks for them.

use std::path::PathBuf;

use super::HfError;

/// The token: `HF_TOKEN` when set and not empty; else the file `HF_TOKEN_PATH`, by default
/// `$HF_HOME/token`, `HF_HOME` by default `$XDG_CACHE_HOME/huggingface`, and that by default
/// `~/.cache/huggingface` (where `hf auth login` writes it). A missing file is no token;
/// one that cannot be read is an error, not a silent anonymous run.
pub(crate) fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Option<String>, HfError> {
    let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
    if let Some(token) = set("HF_TOKEN") {
        return Ok(Some(token.trim().to_owned()));
    }
    let Some(path) = token_path(&set) else {
        return Ok(None);
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text.trim().to_owned()).filter(|t| !t.is_empty())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(HfError::TokenFile { path, source }),
    }
}

fn token_path(set: &impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    if let Some(path) = set("HF_TOKEN_PATH") {
        return Some(PathBuf::from(path));
    }
    let home = match set("HF_HOME") {
        Some(home) => PathBuf::from(home),
        None => match set("XDG_CACHE_HOME") {
            Some(cache) => PathBuf::from(cache).join("huggingface"),
            None => PathBuf::from(set("HOME")?).join(".cache/huggingface"),
        },
    };
    Some(home.join("token"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn the_token_is_looked_for_where_huggingface_hub_keeps_it() {
        let dir = haul_testkit::TestDir::new();
        let root = dir.path().to_str().unwrap();
        std::fs::create_dir_all(dir.path().join("hf")).unwrap();
        std::fs::write(dir.path().join("hf/token"), "hf_home\n").unwrap();
        std::fs::create_dir_all(dir.path().join("xdg/huggingface")).unwrap();
        std::fs::write(dir.path().join("xdg/huggingface/token"), "hf_xdg").unwrap();
        std::fs::create_dir_all(dir.path().join("home/.cache/huggingface")).unwrap();
        std::fs::write(
            dir.path().join("home/.cache/huggingface/token"),
            " hf_cache ",
        )
        .unwrap();
        std::fs::write(dir.path().join("other"), "hf_path").unwrap();
        let (hf_home, xdg, home, other) = (
            format!("{root}/hf"),
            format!("{root}/xdg"),
            format!("{root}/home"),
            format!("{root}/other"),
        );
        let token = |vars: &[(&str, &str)]| from_env(env(vars)).unwrap();
        let all = [
            ("HF_TOKEN", "hf_env"),
            ("HF_TOKEN_PATH", other.as_str()),
            ("HF_HOME", hf_home.as_str()),
            ("XDG_CACHE_HOME", xdg.as_str()),
            ("HOME", home.as_str()),
        ];
        assert_eq!(token(&all).as_deref(), Some("hf_env"));
        assert_eq!(token(&all[1..]).as_deref(), Some("hf_path"));
        assert_eq!(token(&all[2..]).as_deref(), Some("hf_home"));
        assert_eq!(token(&all[3..]).as_deref(), Some("hf_xdg"));
        assert_eq!(token(&all[4..]).as_deref(), Some("hf_cache"));
        // An empty HF_TOKEN is no token; a missing file neither.
        assert_eq!(token(&[("HF_TOKEN", " "), ("HOME", "/nonexistent")]), None);
        assert_eq!(token(&[]), None);
        // A token file that cannot be read (a directory) is an error, not anonymity.
        let error = from_env(env(&[("HF_TOKEN_PATH", root)])).unwrap_err();
        assert!(matches!(error, HfError::TokenFile { .. }), "{error:?}");
    }
}
