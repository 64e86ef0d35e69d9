//! Checking a submitted [`JobSpec`] and turning it into a job's settings and its lazy
//! expansion: everything refused at submit is refused here.

use crate::downloader::dispatcher::{Expansion, Listed};
use crate::downloader::error::SubmitError;
use crate::downloader::job::{JobSpec, Source};
use crate::downloader::key_names::KeyNames;
use crate::downloader::store::JobSettings;
use crate::downloader::uploads::LocalFiles;
use crate::engine::Known;
use crate::source::template::Template;
use crate::source::url;
use crate::target::name::ObjectName;

/// Refuses a list of objects (`(url or key, name)`) in which two land under one name.
fn unique_names(objects: &[(String, ObjectName)]) -> Result<(), SubmitError> {
    let mut seen = std::collections::HashMap::with_capacity(objects.len());
    for (second, (_, name)) in objects.iter().enumerate() {
        if let Some(first) = seen.insert(name.as_str(), second) {
            return Err(SubmitError::DuplicateName {
                name: name.to_string(),
                first,
                second,
            });
        }
    }
    Ok(())
}

/// For a sync job: what tells its record from every other job's (the store, bucket,
/// prefix, suffix, subdirectory, naming, selection and shard), and how its keys are named.
pub(crate) fn sync_source(spec: &JobSpec) -> Option<(String, KeyNames)> {
    let Source::S3Prefix {
        bucket,
        prefix,
        suffix,
    } = &spec.source
    else {
        return None;
    };
    if !spec.sync {
        return None;
    }
    let subdir = spec
        .subdir
        .as_deref()
        .filter(|d| !d.is_empty())
        .map(|d| d.trim_end_matches('/').to_owned());
    let shard = spec
        .shard
        .map(|(i, n)| format!("{i}/{n}"))
        .unwrap_or_default();
    let mut source = format!(
        "{}/{prefix} suffix={} subdir={} shard={shard}",
        bucket.url(),
        suffix.as_deref().unwrap_or(""),
        subdir.as_deref().unwrap_or("")
    );
    // A selection and relative names are part of the source (a record without them stays
    // as it was named).
    if !spec.select.is_all() {
        source.push_str(&format!(" select={}", spec.select.shown()));
    }
    if spec.relative_names {
        source.push_str(" relative");
    }
    Some((source, KeyNames::new(prefix, spec.relative_names, subdir)))
}

/// Validates a spec and turns it into job settings and a lazy expansion.
/// `targets` are the downloader's S3 targets (none for mountpaths).
pub(crate) fn prepare(
    spec: JobSpec,
    targets: &[&crate::S3Target],
) -> Result<(JobSettings, Expansion), SubmitError> {
    let to_store = !targets.is_empty();
    if matches!(spec.source, Source::Local { .. }) && !to_store {
        return Err(SubmitError::Option {
            option: "source",
            reason: "local files are uploaded into bucket prefixes (S3 targets): the downloader has output directories",
        });
    }
    if spec.sync && (to_store || !matches!(spec.source, Source::S3Prefix { .. })) {
        return Err(SubmitError::Option {
            option: "sync",
            reason: "needs an S3 prefix job and output directories (mountpaths)",
        });
    }
    let local = matches!(spec.source, Source::Local { .. });
    if to_store {
        if spec.existing == crate::Existing::Revalidate && !local {
            return Err(SubmitError::Option {
                option: "existing",
                reason: "Revalidate needs output directories (mountpaths) or local files to upload; bucket prefixes (S3 targets) take Skip or Replace",
            });
        }
        if spec.parts.is_some_and(|p| p.active()) {
            return Err(SubmitError::Option {
                option: "parts",
                reason: "ranged parts need output directories (mountpaths); bucket prefixes (S3 targets) upload large objects in parts already",
            });
        }
    }
    if spec.max_connections == Some(0) {
        return Err(SubmitError::Option {
            option: "max_connections",
            reason: "must be at least 1",
        });
    }
    if let Some((index, count)) = spec.shard
        && (count == 0 || index >= count)
    {
        return Err(SubmitError::Option {
            option: "shard",
            reason: "the index must be below the count, and the count at least 1",
        });
    }
    if spec.rate_limit == Some(0) {
        return Err(SubmitError::Option {
            option: "rate_limit",
            reason: "must be at least 1 byte per second",
        });
    }
    for (name, _) in &spec.headers {
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
            return Err(SubmitError::Option {
                option: "header",
                reason: "a header name must be printable ASCII without ':' or spaces",
            });
        }
    }
    let listed = matches!(spec.source, Source::S3Prefix { .. });
    if !listed && !local && !spec.select.names_only() {
        return Err(SubmitError::Option {
            option: "select",
            reason: "sizes and ages are known only from an S3 listing or local files: a URL job takes patterns only",
        });
    }
    let select = (!listed && !local && !spec.select.is_all()).then(|| spec.select.clone());
    let subdir = match spec.subdir.as_deref() {
        None | Some("") => None,
        Some(dir) => Some(ObjectName::new(dir.trim_end_matches('/'))?.to_string()),
    };
    let subdir_for_digests = subdir.clone();
    // `None` for an object the selection leaves out.
    let place =
        |url: &str, name: Option<&str>| -> Result<Option<(String, ObjectName)>, SubmitError> {
            url::check_url(url)?;
            let name = match name {
                Some(name) => ObjectName::new(name)?,
                None => url::name_from_url(url)?,
            };
            if select.as_ref().is_some_and(|s| !s.matches(name.as_str())) {
                return Ok(None);
            }
            let name = match &subdir {
                Some(dir) => name.under(dir)?,
                None => name,
            };
            Ok(Some((url.to_owned(), name)))
        };
    let description = spec
        .description
        .clone()
        .unwrap_or_else(|| spec.default_description());
    let job_bucket = match &spec.source {
        Source::S3Prefix { bucket, .. } | Source::S3Keys { bucket, .. } => Some(bucket.clone()),
        _ => None,
    };
    let is_range = matches!(spec.source, Source::Range { .. });
    let (total, expansion) = match spec.source {
        Source::Single { url, name } => {
            let objects: Vec<_> = place(&url, name.as_deref())?.into_iter().collect();
            (
                Some(objects.len() as u64),
                Expansion::List(objects.into_iter()),
            )
        }
        Source::Multi(list) => {
            if list.is_empty() {
                return Err(SubmitError::Empty);
            }
            let objects: Vec<_> = list
                .iter()
                .map(|(name, url)| place(url, name.as_deref()))
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .flatten()
                .collect();
            unique_names(&objects)?;
            (
                Some(objects.len() as u64),
                Expansion::List(objects.into_iter()),
            )
        }
        Source::Range { template } => {
            let template = Template::parse(&template)?;
            // The first URL shows whether the scheme and host are right; later names are
            // checked as they are reached, and a bad one fails only its object.
            let first = template.get(0).ok_or(SubmitError::Empty)?;
            url::check_url(&first)?;
            if let Some((a, b)) = template.same_name_pair() {
                let name = url::name_from_url(&first)?;
                return Err(SubmitError::DuplicateName {
                    name: name.to_string(),
                    first: a as usize,
                    second: b as usize,
                });
            }
            (
                Some(template.len()),
                Expansion::Range {
                    names: template.into_iter(),
                    subdir,
                    select: select.clone().map(Box::new),
                },
            )
        }
        Source::S3Prefix {
            bucket,
            prefix,
            suffix,
        } => {
            let listing = bucket.list(&prefix);
            (
                None,
                Expansion::Listed(Box::new(Listed {
                    bucket,
                    listing,
                    prefix_len: prefix.len(),
                    select: spec.select.clone(),
                    suffix,
                    names: KeyNames::new(&prefix, spec.relative_names, subdir),
                    failed: false,
                })),
            )
        }
        Source::S3Keys { bucket, keys } => {
            if keys.is_empty() {
                return Err(SubmitError::Empty);
            }
            let mut objects = Vec::with_capacity(keys.len());
            for (name, key) in keys {
                let name = ObjectName::new(name)?;
                if select.as_ref().is_some_and(|s| !s.matches(name.as_str())) {
                    continue;
                }
                let name = match &subdir {
                    Some(dir) => name.under(dir)?,
                    None => name,
                };
                objects.push((key, name));
            }
            unique_names(&objects)?;
            (
                Some(objects.len() as u64),
                Expansion::Keys {
                    bucket: bucket.name().to_owned(),
                    keys: objects.into_iter(),
                },
            )
        }
        Source::Local { paths } => {
            if paths.is_empty() {
                return Err(SubmitError::Empty);
            }
            let look = spec.existing != crate::Existing::Replace;
            let files = LocalFiles::new(&paths, spec.select.clone(), subdir, targets, look);
            (None, Expansion::Local(Box::new(files)))
        }
    };
    // The names the digests and sizes are of, under the job's subdirectory.
    let full_name = |name: &str| -> Result<String, SubmitError> {
        let name = ObjectName::new(name)?;
        let name = match &subdir_for_digests {
            Some(dir) => name.under(dir)?,
            None => name,
        };
        Ok(name.to_string())
    };
    let mut known: std::collections::BTreeMap<String, Known> = Default::default();
    for (name, digest) in spec.sha256 {
        known.entry(full_name(&name)?).or_default().sha256 = Some(digest);
    }
    for (name, size) in spec.sizes {
        known.entry(full_name(&name)?).or_default().size = Some(size);
    }
    for (name, etag) in spec.etags {
        known.entry(full_name(&name)?).or_default().etag = Some(etag);
    }
    for (name, version) in spec.versions {
        known.entry(full_name(&name)?).or_default().version = Some(version);
    }
    let settings = JobSettings {
        description,
        headers: spec.headers,
        timeout: spec.timeout,
        max_connections: spec.max_connections,
        rate_limit: spec.rate_limit,
        existing: spec.existing,
        retry: spec.retry,
        parts: spec.parts,
        shard: spec.shard,
        known,
        bucket: job_bucket,
        // A shard's share, and a range's selection, are known only when the expansion ends.
        total: total.filter(|_| spec.shard.is_none() && !(is_range && select.is_some())),
    };
    Ok((settings, expansion))
}
