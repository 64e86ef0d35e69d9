//! The test origin itself: ranges, validators, counters and each fault switch it offers.

use std::io::Read;
use std::time::Duration;

use haul_origin::{Faults, Origin, body};

use crate::support::guard;

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

struct Got {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn get(agent: &ureq::Agent, url: &str, headers: &[(&str, &str)]) -> Got {
    let mut request = agent.get(url);
    for (n, v) in headers {
        request = request.header(*n, *v);
    }
    let response = request.call().expect("response");
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let mut body = Vec::new();
    response
        .into_body()
        .into_reader()
        .read_to_end(&mut body)
        .expect("body");
    Got {
        status,
        headers,
        body,
    }
}

#[test]
fn serves_deterministic_bytes_with_length_and_etag() {
    guard(|| {
        let origin = Origin::builder().object_size(1000).start().unwrap();
        let a = agent();
        let got = get(&a, &origin.url("/x/y.bin"), &[]);
        assert_eq!(got.status, 200);
        assert_eq!(got.body, body("/x/y.bin", 1000));
        assert_eq!(got.header("content-length"), Some("1000"));
        assert_eq!(got.header("accept-ranges"), Some("bytes"));
        let etag = got.header("etag").unwrap().to_owned();
        assert_eq!(
            get(&a, &origin.url("/x/y.bin?size=1000"), &[]).header("etag"),
            Some(&*etag)
        );
        assert_eq!(
            get(&a, &origin.url("/x/y.bin?size=5"), &[]).body,
            body("/x/y.bin", 5)
        );
    });
}

#[test]
fn ranges_if_range_and_416() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let a = agent();
        let url = origin.url("/r.bin?size=1000");
        let whole = body("/r.bin", 1000);
        let etag = get(&a, &url, &[]).header("etag").unwrap().to_owned();

        let part = get(&a, &url, &[("range", "bytes=100-199")]);
        assert_eq!(part.status, 206);
        assert_eq!(part.body, whole[100..200]);
        assert_eq!(part.header("content-range"), Some("bytes 100-199/1000"));

        let open = get(&a, &url, &[("range", "bytes=990-")]);
        assert_eq!((open.status, open.body.as_slice()), (206, &whole[990..]));
        let suffix = get(&a, &url, &[("range", "bytes=-10")]);
        assert_eq!(
            (suffix.status, suffix.body.as_slice()),
            (206, &whole[990..])
        );
        let clipped = get(&a, &url, &[("range", "bytes=995-5000")]);
        assert_eq!(
            (clipped.status, clipped.body.as_slice()),
            (206, &whole[995..])
        );

        let matching = get(&a, &url, &[("range", "bytes=10-19"), ("if-range", &etag)]);
        assert_eq!(
            (matching.status, matching.body.as_slice()),
            (206, &whole[10..20])
        );
        let stale = get(
            &a,
            &url,
            &[("range", "bytes=10-19"), ("if-range", "\"old\"")],
        );
        assert_eq!((stale.status, stale.body.len()), (200, 1000));

        let beyond = get(&a, &url, &[("range", "bytes=1000-")]);
        assert_eq!(beyond.status, 416);
        assert_eq!(beyond.header("content-range"), Some("bytes */1000"));

        let ignored = get(
            &a,
            &origin.url("/r.bin?size=1000&no_ranges=1"),
            &[("range", "bytes=1-2")],
        );
        assert_eq!((ignored.status, ignored.body.len()), (200, 1000));
        assert_eq!(ignored.header("accept-ranges"), None);
        assert_eq!(origin.stats().status_count(206), 5);
        assert_eq!(origin.stats().status_count(416), 1);
    });
}

#[test]
fn head_sends_headers_only() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let response = agent().head(origin.url("/h.bin?size=77")).call().unwrap();
        assert_eq!(response.status().as_u16(), 200);
        assert_eq!(response.headers().get("content-length").unwrap(), "77");
        assert_eq!(origin.stats().body_bytes, 0);
    });
}

#[test]
fn counts_requests_connections_statuses_and_paths() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let a = agent();
        for _ in 0..3 {
            get(&a, &origin.url("/c.bin?size=10"), &[]);
        }
        get(&a, &origin.url("/d.bin?status=404"), &[]);
        let stats = origin.stats();
        assert_eq!(stats.requests, 4);
        assert_eq!(stats.connections, 1, "keep-alive reuses the connection");
        assert_eq!(stats.status_count(200), 3);
        assert_eq!(stats.status_count(404), 1);
        assert_eq!(stats.requests_for("/c.bin"), 3);
        assert_eq!(stats.body_bytes, 30);
        assert_eq!(stats.peak_concurrent, 1);
        origin.reset_stats();
        assert_eq!(origin.stats().requests, 0);
    });
}

#[test]
fn fail_first_then_ok_with_retry_after() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let a = agent();
        let url = origin.url("/f.bin?size=10&fail_first=2&retry_after=3");
        let first = get(&a, &url, &[]);
        assert_eq!(
            (first.status, first.header("retry-after")),
            (503, Some("3"))
        );
        assert_eq!(get(&a, &url, &[]).status, 503);
        assert_eq!(get(&a, &url, &[]).status, 200);
    });
}

#[test]
fn origin_wide_faults_and_query_overrides() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let mut faults = Faults::default();
        faults.status = Some(500);
        origin.set_faults(faults);
        let a = agent();
        assert_eq!(get(&a, &origin.url("/a"), &[]).status, 500);
        assert_eq!(get(&a, &origin.url("/a?status=502"), &[]).status, 502);
        origin.set_faults(Faults::default());
        assert_eq!(get(&a, &origin.url("/a?size=1"), &[]).status, 200);
        assert_eq!(get(&a, &origin.url("/a?size=x"), &[]).status, 400);
    });
}

#[test]
fn changing_etag_differs_per_request() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let a = agent();
        let url = origin.url("/e.bin?size=10&etag=changing");
        let first = get(&a, &url, &[]).header("etag").unwrap().to_owned();
        let second = get(&a, &url, &[]).header("etag").unwrap().to_owned();
        assert_ne!(first, second);
    });
}

#[test]
fn the_gate_holds_responses_until_released_and_peak_concurrency_is_counted() {
    guard(|| {
        let origin = std::sync::Arc::new(Origin::start().unwrap());
        let readers: Vec<_> = (0..3)
            .map(|i| {
                let origin = std::sync::Arc::clone(&origin);
                std::thread::spawn(move || {
                    get(
                        &agent(),
                        &origin.url(&format!("/g{i}.bin?size=5000&gate_after=1000")),
                        &[],
                    )
                })
            })
            .collect();
        assert!(origin.gate().wait_arrivals(3, Duration::from_secs(30)));
        assert_eq!(origin.gate().waiting(), 3);
        let stats = origin.stats();
        assert_eq!((stats.active, stats.peak_concurrent), (3, 3));
        origin.gate().release();
        for (i, reader) in readers.into_iter().enumerate() {
            assert_eq!(
                reader.join().unwrap().body,
                body(&format!("/g{i}.bin"), 5000)
            );
        }
        assert_eq!(origin.stats().active, 0);
    });
}

/// Starts a GET for `url` on its own thread; the thread returns whether the body ended in an error.
fn read_in_background(url: String) -> std::thread::JoinHandle<bool> {
    std::thread::spawn(move || {
        // Headers are sent before any gate or stall, so the call itself succeeds.
        let response = agent().get(&url).call().expect("headers arrive");
        let mut body = Vec::new();
        response
            .into_body()
            .into_reader()
            .read_to_end(&mut body)
            .is_err()
    })
}

#[test]
fn dropping_the_origin_ends_a_gated_response() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let reader = read_in_background(origin.url("/g.bin?size=100000&gate_after=10"));
        assert!(origin.gate().wait_arrivals(1, Duration::from_secs(30)));
        drop(origin); // must not hang: the guard fails the test if it does
        assert!(reader.join().unwrap(), "a gated body must end in an error");
    });
}

#[test]
fn dropping_the_origin_ends_a_stalled_response() {
    guard(|| {
        let origin = Origin::start().unwrap();
        // The gate proves the response is under way; once released it runs into the stall.
        let reader =
            read_in_background(origin.url("/s.bin?size=100000&gate_after=5&stall_after=10"));
        assert!(origin.gate().wait_arrivals(1, Duration::from_secs(30)));
        origin.gate().release();
        drop(origin);
        assert!(
            reader.join().unwrap(),
            "a stalled body must end in an error"
        );
    });
}
