//! Misbehaviour switches, set for the whole origin or per request in the query string.

use std::time::Duration;

/// What the origin does wrong. Every switch is off by default.
///
/// Set them for every request with [`Origin::set_faults`](super::Origin::set_faults), or for one
/// request in its query string, which overrides the origin's: `?drop_after=1000&delay_ms=50`.
/// The query names are given with each field. `size=N` in the query sets the object size.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Faults {
    /// `delay_ms`: wait before sending the response headers.
    pub delay: Option<Duration>,
    /// `rate`: cap the body at this many bytes per second.
    pub rate: Option<u64>,
    /// `slow_from=OFFSET&slow_rate=R`: a body whose first byte is at `OFFSET` or later (a
    /// range that starts there) is capped at `R` bytes per second instead, as one slow path
    /// to the server would make the connection that asked for it.
    pub slow_from: Option<u64>,
    /// `slow_rate`: see [`slow_from`](Faults::slow_from).
    pub slow_rate: Option<u64>,
    /// `status`: answer every request with this status and a short text body.
    pub status: Option<u16>,
    /// `retry_after`: with `status` or `fail_first`, send `Retry-After: N` (seconds).
    pub retry_after: Option<u64>,
    /// `fail_first`: answer the first K requests for each path with 503.
    pub fail_first: Option<u32>,
    /// `busy_above`: answer 503 when more than K requests (this one included) are in
    /// progress at the origin, as a server at its capacity does.
    pub busy_above: Option<u64>,
    /// `faults_first`: apply the failures (`delay_ms`, `status`, `drop_after`,
    /// `reset_after`, `stall_after`, `gate_after`, `extra_length`, `short_length`) only to
    /// the first K requests for each path, so a retry gets past them. The shape of the
    /// response (`no_ranges`, `etag`, `no_length`, `chunked`, `close`, `rate`,
    /// `need_header`, `ignore_conditions`, `range_from_zero`, `busy_above`) stays.
    pub faults_first: Option<u32>,
    /// `drop_after`: close the connection cleanly (FIN) after N body bytes.
    pub drop_after: Option<u64>,
    /// `reset_after`: reset the connection (RST) after N body bytes.
    pub reset_after: Option<u64>,
    /// `stall_after`: stop sending after N body bytes until the origin is dropped.
    pub stall_after: Option<u64>,
    /// `gate_after`: after N body bytes, wait at the origin's [`Gate`](super::Gate) until the
    /// test releases it.
    pub gate_after: Option<u64>,
    /// `extra_length`: announce a Content-Length N bytes larger than the body, then close.
    pub extra_length: Option<u64>,
    /// `short_length`: announce a Content-Length N bytes smaller than the body, send the whole
    /// body, then close.
    pub short_length: Option<u64>,
    /// `no_length=1`: no Content-Length; the body ends when the connection closes.
    pub no_length: bool,
    /// `chunked=1`: `Transfer-Encoding: chunked`.
    pub chunked: bool,
    /// `no_ranges=1`: ignore `Range` and always answer 200 with the whole body.
    pub no_ranges: bool,
    /// `etag=changing`: a different ETag on every request.
    pub changing_etag: bool,
    /// `etag=hex`: an opaque ETag of 32 hex digits, which looks like an MD5 but is not one
    /// (as a server's hash of something other than the bytes would).
    pub hex_etag: bool,
    /// `close=1`: close the connection after the response (no keep-alive).
    pub close: bool,
    /// `need_header=NAME:VALUE`: answer 401 unless the request has this header (the name
    /// compared case-insensitively, the value exactly).
    pub need_header: Option<(String, String)>,
    /// `ignore_conditions=1`: honour `Range` but ignore `If-Range` and `If-Match`, as some
    /// caches and gateways do: a resume of an object that changed gets the new version's
    /// bytes in a 206.
    pub ignore_conditions: bool,
    /// `range_from_zero=1`: answer every range with a 206 of the length asked but starting
    /// at offset 0 (and say so in `Content-Range`).
    pub range_from_zero: bool,
    /// `redirect=LOCATION` (percent-encoded): answer 302 with this `Location` (a path or
    /// another origin's URL).
    pub redirect: Option<String>,
    /// `refuse_header=NAME`: answer 400 when the request has this header (one that should
    /// not have reached this origin).
    pub refuse_header: Option<String>,
}

impl Faults {
    /// These faults without the failures that `faults_first` limits.
    pub(super) fn shape_only(&self) -> Faults {
        Faults {
            rate: self.rate,
            slow_from: self.slow_from,
            slow_rate: self.slow_rate,
            busy_above: self.busy_above,
            no_length: self.no_length,
            chunked: self.chunked,
            no_ranges: self.no_ranges,
            changing_etag: self.changing_etag,
            hex_etag: self.hex_etag,
            close: self.close,
            need_header: self.need_header.clone(),
            refuse_header: self.refuse_header.clone(),
            redirect: self.redirect.clone(),
            ignore_conditions: self.ignore_conditions,
            range_from_zero: self.range_from_zero,
            ..Faults::default()
        }
    }
}

/// `%XX` escapes decoded (a malformed one is kept as it is).
pub(crate) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| text.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A query that is not understood: the request gets 400.
#[derive(Debug)]
pub(super) struct BadQuery(pub String);

/// The faults and object size a query asks for, on top of `base`.
pub(super) fn from_query(base: &Faults, query: &str, size: &mut u64) -> Result<Faults, BadQuery> {
    let mut f = base.clone();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let num = || -> Result<u64, BadQuery> {
            value
                .parse()
                .map_err(|_| BadQuery(format!("{key}={value}: not a number")))
        };
        let flag = || value != "0" && value != "false";
        match key {
            "size" => *size = num()?,
            "delay_ms" => f.delay = Some(Duration::from_millis(num()?)),
            "rate" => f.rate = Some(num()?),
            "slow_from" => f.slow_from = Some(num()?),
            "slow_rate" => f.slow_rate = Some(num()?),
            "status" => {
                f.status =
                    Some(u16::try_from(num()?).map_err(|_| BadQuery(format!("status={value}")))?)
            }
            "retry_after" => f.retry_after = Some(num()?),
            "fail_first" => {
                f.fail_first =
                    Some(u32::try_from(num()?).map_err(|_| BadQuery(format!("{key}={value}")))?)
            }
            "busy_above" => f.busy_above = Some(num()?),
            "faults_first" => {
                f.faults_first =
                    Some(u32::try_from(num()?).map_err(|_| BadQuery(format!("{key}={value}")))?)
            }
            "drop_after" => f.drop_after = Some(num()?),
            "reset_after" => f.reset_after = Some(num()?),
            "stall_after" => f.stall_after = Some(num()?),
            "gate_after" => f.gate_after = Some(num()?),
            "extra_length" => f.extra_length = Some(num()?),
            "short_length" => f.short_length = Some(num()?),
            "no_length" => f.no_length = flag(),
            "chunked" => f.chunked = flag(),
            "no_ranges" => f.no_ranges = flag(),
            "etag" => {
                f.changing_etag = value == "changing";
                f.hex_etag = value == "hex";
            }
            "close" => f.close = flag(),
            "ignore_conditions" => f.ignore_conditions = flag(),
            "redirect" => f.redirect = Some(percent_decode(value)),
            "refuse_header" => f.refuse_header = Some(value.to_ascii_lowercase()),
            "range_from_zero" => f.range_from_zero = flag(),
            "need_header" => {
                let (name, want) = value
                    .split_once(':')
                    .ok_or_else(|| BadQuery(format!("need_header={value}: expected NAME:VALUE")))?;
                f.need_header = Some((name.to_ascii_lowercase(), want.to_owned()));
            }
            // Unknown keys are ignored: presigned URLs and the like carry their own.
            _ => {}
        }
    }
    Ok(f)
}
