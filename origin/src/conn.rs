//! One connection: parse requests, answer them, misbehave as asked.

use std::cell::Cell;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::faults::{self, Faults};
use super::{Shared, content, hub};

/// Body bytes generated and written per write (and the longest time between fault checks).
const CHUNK_BYTES: usize = 128 * 1024;
const MAX_HEADER_LINE: u64 = 16 * 1024;
const MAX_HEADERS: usize = 100;
/// A stalled response gives up after this long even if the origin is never dropped.
const MAX_STALL: Duration = Duration::from_secs(600);

#[derive(Clone)]
struct Request {
    method: String,
    path: String,
    query: String,
    range: Option<String>,
    if_range: Option<String>,
    keep_alive: bool,
    /// Every header, name lowercased.
    headers: Vec<(String, String)>,
}

/// How a response ended, and so what happens to the connection.
enum End {
    KeepAlive,
    /// Close cleanly (FIN).
    Close,
    /// Close with RST.
    Reset,
    /// The connection is broken or the origin is stopping: just go.
    Gone,
}

pub(super) fn serve(shared: &Shared, stream: &TcpStream) {
    let mut reader = BufReader::with_capacity(16 * 1024, stream);
    loop {
        let request = match read_request(&mut reader) {
            Ok(Some(request)) => request,
            Ok(None) | Err(_) => return,
        };
        let attempt = shared.request_started(&request.path);
        let active = Active {
            shared,
            ended: Cell::new(false),
        };
        let end = respond(shared, stream, &request, attempt, &active);
        drop(active);
        match end {
            End::KeepAlive if !shared.stopping() => {}
            End::KeepAlive | End::Close => {
                let _ = (&*stream).flush();
                let _ = stream.shutdown(Shutdown::Write);
                return;
            }
            End::Reset => {
                let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
                return;
            }
            End::Gone => return,
        }
    }
}

fn read_request(reader: &mut BufReader<&TcpStream>) -> std::io::Result<Option<Request>> {
    let mut line = String::new();
    if reader.by_ref().take(MAX_HEADER_LINE).read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Ok(None);
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut request = Request {
        method: method.to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
        range: None,
        if_range: None,
        keep_alive: version != "HTTP/1.0",
        headers: Vec::new(),
    };
    for _ in 0..MAX_HEADERS {
        line.clear();
        if reader.by_ref().take(MAX_HEADER_LINE).read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let header = line.trim_end();
        if header.is_empty() {
            return Ok(Some(request));
        }
        let Some((name, value)) = header.split_once(':') else {
            continue;
        };
        let value = value.trim().to_owned();
        let name = name.trim().to_ascii_lowercase();
        request.headers.push((name.clone(), value.clone()));
        match name.as_str() {
            "range" => request.range = Some(value),
            "if-range" => request.if_range = Some(value),
            "connection" => {
                let value = value.to_ascii_lowercase();
                if value.contains("close") {
                    request.keep_alive = false;
                } else if value.contains("keep-alive") {
                    request.keep_alive = true;
                }
            }
            _ => {}
        }
    }
    Ok(None)
}

/// A request in progress, for the concurrency counters. It ends just *before* the last byte of
/// the response is written, so a client that has read its whole response is never still
/// counted: the peak the origin reports never exceeds what the client really had in flight.
struct Active<'a> {
    shared: &'a Shared,
    ended: Cell<bool>,
}

impl Active<'_> {
    fn end(&self) {
        if !self.ended.replace(true) {
            self.shared.request_ended();
        }
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.end();
    }
}

enum Range {
    Full,
    Part(u64, u64),
    Unsatisfiable,
}

/// Parses one `bytes=` range against `size`; anything it does not understand means the whole
/// body, as RFC 9110 allows.
fn parse_range(header: &str, size: u64) -> Range {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return Range::Full;
    };
    if spec.contains(',') {
        return Range::Full;
    }
    let Some((first, last)) = spec.split_once('-') else {
        return Range::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        return match last.parse::<u64>() {
            Ok(0) => Range::Unsatisfiable,
            Ok(_) if size == 0 => Range::Unsatisfiable,
            Ok(n) => Range::Part(size.saturating_sub(n), size),
            Err(_) => Range::Full,
        };
    }
    let Ok(start) = first.parse::<u64>() else {
        return Range::Full;
    };
    let end = if last.is_empty() {
        size
    } else {
        match last.parse::<u64>() {
            Ok(last) if last >= start => (last + 1).min(size),
            _ => return Range::Full,
        }
    };
    if start >= size {
        Range::Unsatisfiable
    } else {
        Range::Part(start, end)
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        302 => "Found",
        206 => "Partial Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

fn simple(
    shared: &Shared,
    active: &Active<'_>,
    stream: &TcpStream,
    status: u16,
    extra: &str,
    text: &str,
    keep_alive: bool,
) -> End {
    let typed = format!("content-type: text/plain\r\n{extra}");
    reply(shared, active, stream, status, &typed, text, keep_alive)
}

/// A whole response: `extra` header lines (a content type among them), then `text`.
fn reply(
    shared: &Shared,
    active: &Active<'_>,
    stream: &TcpStream,
    status: u16,
    extra: &str,
    text: &str,
    keep_alive: bool,
) -> End {
    shared.record_status(status);
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let head = format!(
        "HTTP/1.1 {status} {}\r\ncontent-length: {}\r\nconnection: {connection}\r\n{extra}\r\n{text}",
        reason(status),
        text.len()
    );
    active.end();
    match (&*stream).write_all(head.as_bytes()) {
        Ok(()) if keep_alive => End::KeepAlive,
        Ok(()) => End::Close,
        Err(_) => End::Gone,
    }
}

fn respond(
    shared: &Shared,
    stream: &TcpStream,
    request: &Request,
    attempt: u64,
    active: &Active<'_>,
) -> End {
    // The emulated Hub answers its own paths, or names the bytes a file of it is.
    let (served, hub_headers);
    let request = match &shared.hub {
        Some(hub) => {
            let base = format!("http://{}", shared.addr);
            match hub.route(&request.path, &request.query, &request.headers, &base) {
                hub::Route::Pass => {
                    hub_headers = String::new();
                    request
                }
                hub::Route::Reply {
                    status,
                    headers,
                    body,
                } => {
                    let extra = format!("content-type: application/json\r\n{headers}");
                    let body = if request.method == "HEAD" { "" } else { &body };
                    return reply(
                        shared,
                        active,
                        stream,
                        status,
                        &extra,
                        body,
                        request.keep_alive,
                    );
                }
                hub::Route::Serve {
                    path,
                    size,
                    headers,
                } => {
                    hub_headers = headers;
                    served = Request {
                        path,
                        query: format!("size={size}"),
                        ..request.clone()
                    };
                    &served
                }
            }
        }
        None => {
            hub_headers = String::new();
            request
        }
    };
    let mut size = shared.object_size;
    let base = shared.faults.lock().clone();
    let path_query = shared.path_queries.lock().get(&request.path).cloned();
    let query = match path_query {
        Some(q) if request.query.is_empty() => q,
        Some(q) => format!("{q}&{}", request.query),
        None => request.query.clone(),
    };
    let f = match faults::from_query(&base, &query, &mut size) {
        Ok(f) if f.faults_first.is_some_and(|k| attempt > u64::from(k)) => f.shape_only(),
        Ok(f) => f,
        Err(bad) => return simple(shared, active, stream, 400, "", &bad.0, request.keep_alive),
    };
    if let Some(delay) = f.delay
        && !shared.sleep(delay)
    {
        return End::Gone;
    }
    let keep_alive = request.keep_alive && !f.close;
    let retry_after = f
        .retry_after
        .map(|s| format!("retry-after: {s}\r\n"))
        .unwrap_or_default();
    if request.method != "GET" && request.method != "HEAD" {
        return simple(
            shared,
            active,
            stream,
            405,
            "",
            "GET or HEAD only\n",
            keep_alive,
        );
    }
    if let Some((name, want)) = &f.need_header {
        let found = request.headers.iter().any(|(n, v)| n == name && v == want);
        if !found {
            let text = format!("missing header {name}\n");
            return simple(shared, active, stream, 401, "", &text, keep_alive);
        }
    }
    if let Some(name) = &f.refuse_header
        && request.headers.iter().any(|(n, _)| n == name)
    {
        let text = format!("header {name} must not be sent here\n");
        return simple(shared, active, stream, 400, "", &text, keep_alive);
    }
    if let Some(location) = &f.redirect {
        let extra = format!("location: {location}\r\n");
        return simple(shared, active, stream, 302, &extra, "", keep_alive);
    }
    if f.fail_first.is_some_and(|k| attempt <= u64::from(k)) {
        let text = format!("injected failure {attempt}\n");
        return simple(shared, active, stream, 503, &retry_after, &text, keep_alive);
    }
    if let Some(most) = f.busy_above
        && shared.active() > most
    {
        let text = format!("busy: more than {most} requests in progress\n");
        return simple(shared, active, stream, 503, &retry_after, &text, keep_alive);
    }
    if let Some(status) = f.status {
        let text = format!("injected status {status}\n");
        return simple(
            shared,
            active,
            stream,
            status,
            &retry_after,
            &text,
            keep_alive,
        );
    }

    let version = shared.version.load(Ordering::SeqCst);
    let seed = content::versioned_seed(&request.path, version);
    let etag = if f.changing_etag {
        let n = shared.etag_counter.fetch_add(1, Ordering::Relaxed);
        format!("\"{seed:016x}-{size}-{n}\"")
    } else if f.hex_etag {
        format!("\"{seed:016x}{size:016x}\"")
    } else {
        format!("\"{seed:016x}-{size}\"")
    };
    let modified = last_modified(seed);
    // If-Match (a resume that must not mix versions): 412 unless the ETag matches.
    let if_match = request
        .headers
        .iter()
        .find(|(name, _)| name == "if-match")
        .map(|(_, value)| value.as_str());
    if !f.ignore_conditions && if_match.is_some_and(|want| want != "*" && want != etag) {
        return simple(
            shared,
            active,
            stream,
            412,
            "",
            "precondition failed\n",
            keep_alive,
        );
    }
    let range = match (&request.range, &request.if_range) {
        (Some(_), _) if f.no_ranges => Range::Full,
        // If-Range holds an ETag or a date; either must match exactly.
        (Some(_), Some(validator))
            if !f.ignore_conditions && *validator != etag && *validator != modified =>
        {
            Range::Full
        }
        (Some(header), _) => parse_range(header, size),
        (None, _) => Range::Full,
    };
    let (status, start, end) = match range {
        Range::Full => (200, 0, size),
        // A lying server: the length asked for, from the wrong place.
        Range::Part(start, end) if f.range_from_zero => (206, 0, end - start),
        Range::Part(start, end) => (206, start, end),
        Range::Unsatisfiable => {
            // With the object's validators, as nginx and S3 stores send them.
            let extra = format!(
                "content-range: bytes */{size}\r\netag: {etag}\r\nlast-modified: {modified}\r\n"
            );
            return simple(shared, active, stream, 416, &extra, "", keep_alive);
        }
    };
    let len = end - start;

    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    head.push_str("content-type: application/octet-stream\r\n");
    head.push_str(&hub_headers);
    head.push_str(&format!("etag: {etag}\r\n"));
    head.push_str(&format!("last-modified: {modified}\r\n"));
    if !f.no_ranges {
        head.push_str("accept-ranges: bytes\r\n");
    }
    if status == 206 {
        head.push_str(&format!(
            "content-range: bytes {start}-{}/{size}\r\n",
            end - 1
        ));
    }
    let lies = f.extra_length.is_some() || f.short_length.is_some();
    if f.chunked {
        head.push_str("transfer-encoding: chunked\r\n");
    } else if !f.no_length {
        let announced =
            (len + f.extra_length.unwrap_or(0)).saturating_sub(f.short_length.unwrap_or(0));
        head.push_str(&format!("content-length: {announced}\r\n"));
    }
    let keep_alive = keep_alive && !f.no_length && !lies;
    head.push_str(if keep_alive {
        "connection: keep-alive\r\n\r\n"
    } else {
        "connection: close\r\n\r\n"
    });
    shared.record_status(status);

    if request.method == "HEAD" {
        active.end();
        return match (&*stream).write_all(head.as_bytes()) {
            Ok(()) if keep_alive => End::KeepAlive,
            Ok(()) => End::Close,
            Err(_) => End::Gone,
        };
    }
    let span = Span { seed, start, len };
    match send_body(shared, active, stream, &f, head.into_bytes(), span) {
        Some(end) => end,
        None if keep_alive => End::KeepAlive,
        None => End::Close,
    }
}

/// The bytes a response carries: `len` bytes of object `seed` from offset `start`.
#[derive(Debug, Clone, Copy)]
struct Span {
    seed: u64,
    start: u64,
    len: u64,
}

/// Writes `head` and the body; returns `Some(end)` when a fault or failure ended it early.
fn send_body(
    shared: &Shared,
    active: &Active<'_>,
    stream: &TcpStream,
    f: &Faults,
    head: Vec<u8>,
    span: Span,
) -> Option<End> {
    let Span { seed, start, len } = span;
    let mut out = head;
    let mut gated = false;
    let mut sent = 0u64;
    let began = Instant::now();
    let write = |out: &mut Vec<u8>| -> bool {
        let ok = out.is_empty() || (&*stream).write_all(out).is_ok();
        out.clear();
        ok
    };
    let rate = match (f.slow_from, f.slow_rate) {
        (Some(from), Some(slow)) if start >= from => Some(slow),
        _ => f.rate,
    };
    let pace_chunk = rate.map(|r| (r / 20).max(1)).unwrap_or(u64::MAX);
    while sent < len {
        if f.gate_after.is_some_and(|n| sent >= n) && !gated {
            if !write(&mut out) {
                return Some(End::Gone);
            }
            shared.gate.pass();
            gated = true;
            if shared.stopping() {
                return Some(End::Gone);
            }
        }
        if f.drop_after.is_some_and(|n| sent >= n) {
            write(&mut out);
            return Some(End::Close);
        }
        if f.reset_after.is_some_and(|n| sent >= n) {
            write(&mut out);
            return Some(End::Reset);
        }
        if f.stall_after.is_some_and(|n| sent >= n) {
            write(&mut out);
            shared.sleep(MAX_STALL);
            return Some(End::Gone);
        }
        let mut limit = (len - sent).min(CHUNK_BYTES as u64).min(pace_chunk);
        for n in [f.gate_after, f.drop_after, f.reset_after, f.stall_after]
            .into_iter()
            .flatten()
        {
            if n > sent {
                limit = limit.min(n - sent);
            }
        }
        let limit = limit as usize;
        if f.chunked {
            out.extend_from_slice(format!("{limit:x}\r\n").as_bytes());
        }
        let at = out.len();
        out.resize(at + limit, 0);
        content::fill(seed, start + sent, &mut out[at..]);
        if f.chunked {
            out.extend_from_slice(b"\r\n");
        }
        if sent + limit as u64 == len {
            if f.chunked {
                out.extend_from_slice(b"0\r\n\r\n");
            }
            active.end();
        }
        // Counted before the write, so a client that has the bytes sees them counted.
        shared.body_bytes.fetch_add(limit as u64, Ordering::Relaxed);
        if !write(&mut out) {
            return Some(End::Gone);
        }
        sent += limit as u64;
        if let Some(rate) = rate {
            let due = Duration::from_secs_f64(sent as f64 / rate as f64);
            let elapsed = began.elapsed();
            if due > elapsed && !shared.sleep(due - elapsed) {
                return Some(End::Gone);
            }
        }
    }
    if len == 0 {
        if f.chunked {
            out.extend_from_slice(b"0\r\n\r\n");
        }
        active.end();
        if !write(&mut out) {
            return Some(End::Gone);
        }
    }
    if f.no_length || f.extra_length.is_some() || f.short_length.is_some() {
        return Some(End::Close);
    }
    None
}

/// A fixed `Last-Modified` per path: some second of 2024, as an IMF-fixdate.
fn last_modified(seed: u64) -> String {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    const LENGTHS: [u64; 12] = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let second_of_year = seed % (366 * 86_400);
    let day_of_year = second_of_year / 86_400;
    let (mut month, mut day) = (0, day_of_year);
    while day >= LENGTHS[month] {
        day -= LENGTHS[month];
        month += 1;
    }
    let rem = second_of_year % 86_400;
    format!(
        "{}, {:02} {} 2024 {:02}:{:02}:{:02} GMT",
        DAYS[(day_of_year % 7) as usize], // 2024-01-01 was a Monday
        day + 1,
        MONTHS[month],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
