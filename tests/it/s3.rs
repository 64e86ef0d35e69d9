//! The S3 client side against a real S3 server in this process: listing, PUT, errors.

use haul::{Bucket, S3Config, S3Error};

use crate::support::guard;
use crate::support::s3::S3Server;

#[test]
fn list_is_lazy_page_by_page_and_complete() {
    guard(|| {
        let server = S3Server::start(&["data"]);
        let mut seeds: Vec<(String, Vec<u8>)> = (0..2500)
            .map(|i| (format!("p/k-{i:05}"), b"x".to_vec()))
            .collect();
        seeds.push(("other/k".to_owned(), b"x".to_vec()));
        server.seed_many("data", seeds);
        let bucket = server.bucket("data");
        let requests = || {
            server
                .counters()
                .map(|c| c.requests.load(std::sync::atomic::Ordering::SeqCst))
        };
        let before = requests();
        let mut listing = bucket.list("p/");
        let first = listing.next().unwrap().unwrap();
        assert_eq!((first.key.as_str(), first.size), ("p/k-00000", 1));
        // One page fetched so far (only the in-process server counts).
        if let (Some(before), Some(now)) = (before, requests()) {
            assert_eq!(now - before, 1);
        }
        let rest: Vec<String> = listing.map(|o| o.unwrap().key).collect();
        assert_eq!(rest.len(), 2499);
        let expected: Vec<String> = (1..2500).map(|i| format!("p/k-{i:05}")).collect();
        assert_eq!(rest, expected);
        if let (Some(before), Some(now)) = (before, requests()) {
            assert_eq!(now - before, 3);
        }
    });
}

/// Across a slow link a page's first keys come long before its last: a listing yields them
/// as its reply arrives, so a job starts on them (read whole, the first came with the last).
#[test]
fn a_listing_yields_a_pages_first_keys_before_the_page_has_arrived() {
    guard(|| {
        let server = S3Server::start(&["slow"]);
        let keys: Vec<String> = (0..1000)
            .map(|i| format!("shards/train/shard-{i:05}.tar"))
            .collect();
        server.seed_many(
            "slow",
            keys.iter().map(|k| (k.clone(), b"x".to_vec())).collect(),
        );
        // 1 Mbit/s: one 1,000-key page (some 250 KB of XML) takes about two seconds, far
        // longer than the store takes to list it.
        let wan = haul_wan::Wan::start(
            server.socket_addr(),
            haul_wan::WanConfig::default()
                .rtt(std::time::Duration::from_millis(20))
                .rate_mbit(1),
        )
        .unwrap();
        let config = server.config_at(format!("http://{}", wan.addr()));
        let bucket = Bucket::new(&server.bucket_name("slow"), &config).unwrap();
        let started = std::time::Instant::now();
        let mut listing = bucket.list("shards/");
        let first = listing.next().unwrap().unwrap();
        let first_came = started.elapsed();
        assert_eq!(first.key, keys[0]);
        let rest: Vec<String> = listing.map(|o| o.unwrap().key).collect();
        let last_came = started.elapsed();
        assert_eq!(rest, keys[1..]);
        assert!(
            first_came * 3 < last_came,
            "first key after {first_came:?}, the last after {last_came:?}"
        );
    });
}

/// A page whose reply breaks off (a clean close or a reset) is asked for again and read
/// past the keys already yielded: every key once, in order.
#[test]
fn a_page_that_breaks_off_is_asked_again_and_no_key_comes_twice() {
    guard(|| {
        for reset in [false, true] {
            let server = S3Server::start(&["cut"]);
            let keys: Vec<String> = (0..2500).map(|i| format!("p/k-{i:05}")).collect();
            server.seed_many(
                "cut",
                keys.iter().map(|k| (k.clone(), b"x".to_vec())).collect(),
            );
            let faults = crate::support::proxy::Faults {
                cut_after: Some(60_000),
                reset,
                ..Default::default()
            };
            let proxy = crate::support::proxy::FaultProxy::start(server.socket_addr(), faults, 1);
            let config = server.config_at(format!("http://{}", proxy.addr()));
            let bucket = Bucket::new(&server.bucket_name("cut"), &config).unwrap();
            let listed: Vec<String> = bucket.list("p/").map(|o| o.unwrap().key).collect();
            let distinct: std::collections::BTreeSet<&String> = listed.iter().collect();
            assert!(
                listed == keys,
                "reset {reset}: {} listed, {} distinct, of {}",
                listed.len(),
                distinct.len(),
                keys.len()
            );
            assert!(proxy.connections() >= 2, "the page was asked for again");
        }
    });
}

#[test]
fn put_and_list_keys_with_odd_characters() {
    guard(|| {
        let server = S3Server::start(&["odd"]);
        let bucket = server.bucket("odd");
        let keys = [
            "a b",
            "a+b",
            "a%b",
            "a?b",
            "a#b",
            "a=b",
            "ünï/cødé ✓",
            "x&y",
            "(paren)",
            " leading space",
            "trailing space ",
            "two  spaces",
            "tab\there",
        ];
        for key in keys {
            bucket
                .put(key, key.as_bytes())
                .unwrap_or_else(|e| panic!("{key}: {e}"));
        }
        let mut listed: Vec<String> = bucket.list("").map(|o| o.unwrap().key).collect();
        listed.sort();
        let mut expected: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        expected.sort();
        assert_eq!(listed, expected);
    });
}

#[test]
fn wrong_credentials_and_missing_buckets_are_clear_errors() {
    guard(|| {
        let server = S3Server::start(&["data"]);
        let data = server.bucket_name("data");
        let wrong =
            S3Config::new(server.endpoint(), "us-east-1").credentials(server.keys().0, "wrong");
        let bucket = Bucket::new(&data, &wrong).unwrap();
        let err = bucket.list("").next().unwrap().unwrap_err();
        assert!(matches!(err, S3Error::Status { status: 403, .. }), "{err}");
        assert!(
            err.to_string()
                .starts_with(&format!("list s3://{data}/: HTTP status 403")),
            "{err}"
        );

        let missing = server.bucket("nope");
        let err = missing.list("x/").next().unwrap().unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "list s3://{}/x/: HTTP status 404 (NoSuchBucket)",
                missing.name()
            )
        );
    });
}

#[test]
fn bad_bucket_names_and_endpoints_are_refused() {
    let config = S3Config::new("http://127.0.0.1:1", "us-east-1").credentials("k", "s");
    for name in [
        "ab",
        "UPPER",
        "-start",
        "end-",
        "a..b",
        "under_score",
        &"x".repeat(64),
    ] {
        let err = Bucket::new(name, &config).unwrap_err();
        assert!(
            err.to_string().contains("must be 3-63 lowercase"),
            "{name}: {err}"
        );
    }
    let bad = S3Config::new("ftp://host", "us-east-1").credentials("k", "s");
    let err = Bucket::new("data", &bad).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("bad S3 configuration: unsupported URL"),
        "{err}"
    );
}

#[test]
fn a_dead_endpoint_is_a_request_error() {
    guard(|| {
        // In process, whatever the environment says: the test stops the server.
        let server = S3Server::start_local(&["data"]);
        let config = server.config().retry(
            haul::RetryPolicy::default()
                .attempts(3)
                .initial_backoff(std::time::Duration::from_millis(1)),
        );
        drop(server);
        let bucket = Bucket::new("data", &config).unwrap();
        let err = bucket.list("p/").next().unwrap().unwrap_err();
        assert!(matches!(err, S3Error::Request { .. }), "{err}");
    });
}

#[test]
fn create_makes_a_bucket_and_creating_it_again_is_fine() {
    guard(|| {
        let server = S3Server::start(&[]);
        let bucket = server.bucket("fresh");
        let err = bucket.list("").next().unwrap().unwrap_err();
        assert!(matches!(err, S3Error::Status { status: 404, .. }), "{err}");
        bucket.create().unwrap();
        bucket.create().unwrap();
        bucket.put("k", b"v").unwrap();
        let listed: Vec<String> = bucket.list("").map(|o| o.unwrap().key).collect();
        assert_eq!(listed, ["k"]);
    });
}

#[test]
fn a_bucket_in_another_region_is_followed_and_every_call_made_again() {
    use crate::support::s3_store::WrongRegion;
    use haul::{Detail, Downloader, Fetcher, JobSpec, S3Target};
    use std::io::Read;
    use std::time::Duration;
    crate::support::guard_for(Duration::from_secs(90), || {
        for answer in [WrongRegion::Redirect, WrongRegion::BadRequest] {
            let server = S3Server::start_local(&["faraway"]);
            for name in ["a", "b", "c"] {
                server.seed_file("faraway", &format!("d/{name}"), name.repeat(100).as_bytes());
            }
            server.home_region("eu-west-1", answer);
            // Each first call, on a bucket of its own, learns the region: a GET through the
            // engine, a HEAD, a listing, a PUT.
            let fetcher = Fetcher::builder().workers(1).build().unwrap();
            let object = fetcher
                .fetch(server.bucket("faraway"), vec!["d/a".to_owned()])
                .next()
                .unwrap()
                .unwrap_or_else(|e| panic!("{answer:?}: GET: {}", haul::error_chain(&e)));
            let mut bytes = Vec::new();
            object.into_reader().read_to_end(&mut bytes).unwrap();
            assert_eq!(bytes, "a".repeat(100).as_bytes());
            let head = server.bucket("faraway").head("d/b");
            assert_eq!(head.unwrap().map(|o| o.size), Some(100), "{answer:?}: HEAD");
            let listed = server.bucket("faraway");
            let keys: Vec<String> = listed.list("d/").map(|o| o.unwrap().key).collect();
            assert_eq!(keys, ["d/a", "d/b", "d/c"], "{answer:?}: listing");
            let put = server.bucket("faraway");
            put.put("p/new", b"new").unwrap();
            assert_eq!(
                server.region_refusals(),
                4,
                "{answer:?}: one refusal per bucket"
            );

            // What a bucket learned, its jobs know: a prefix job down, local files up (one
            // of them multipart), with no refusal more.
            let dir = crate::support::TestDir::new();
            let down = Downloader::builder().mountpath(dir.path()).build().unwrap();
            let job = down.submit(JobSpec::s3_prefix(&listed, "d/")).unwrap();
            assert!(down.wait(job, Duration::from_secs(30)).unwrap());
            let status = down.status(job, Detail::All).unwrap();
            assert_eq!(status.finished, 3, "{answer:?}: {:?}", status.failures);
            let files = crate::support::TestDir::new();
            std::fs::write(files.path().join("big"), vec![7u8; 6 << 20]).unwrap();
            std::fs::write(files.path().join("small"), b"small").unwrap();
            let up = Downloader::builder()
                .s3_target(S3Target::new(&put, "up/").part_size(5 << 20))
                .build()
                .unwrap();
            let job = up.submit(JobSpec::local([files.path()])).unwrap();
            assert!(up.wait(job, Duration::from_secs(30)).unwrap());
            let status = up.status(job, Detail::All).unwrap();
            assert_eq!(status.finished, 2, "{answer:?}: {:?}", status.failures);
            assert_eq!(
                server.region_refusals(),
                4,
                "{answer:?}: refused after following"
            );
        }
    });
}

#[test]
fn virtual_hosted_buckets_are_reached_by_their_own_names() {
    use haul::{Fetcher, HttpConfig};
    use std::io::Read;
    crate::support::guard(|| {
        let server = S3Server::start_virtual_hosted(&["vhost"]);
        let addr = server.socket_addr();
        let (access, secret) = server.keys();
        // Only the bucket's own name resolves: path-style requests (to the domain itself)
        // cannot get through, so whatever works went to `vhost.s3.haul.test`.
        let config = |path_style: bool| {
            let http = HttpConfig::default().resolve("vhost.s3.haul.test", addr.port(), addr.ip());
            S3Config::new(server.endpoint(), "us-east-1")
                .credentials(access, secret)
                .path_style(path_style)
                .http(http)
        };
        let bucket = Bucket::new("vhost", &config(false)).unwrap();
        bucket.put("dir/a.txt", b"virtually").unwrap();
        let keys: Vec<String> = bucket.list("dir/").map(|o| o.unwrap().key).collect();
        assert_eq!(keys, ["dir/a.txt"]);
        assert_eq!(bucket.head("dir/a.txt").unwrap().map(|o| o.size), Some(9));
        let fetcher = Fetcher::builder().workers(1).build().unwrap();
        let mut bytes = Vec::new();
        fetcher
            .fetch(&bucket, vec!["dir/a.txt".to_owned()])
            .next()
            .unwrap()
            .unwrap()
            .into_reader()
            .read_to_end(&mut bytes)
            .unwrap();
        assert_eq!(bytes, b"virtually");

        let once = haul::RetryPolicy::default().attempts(1);
        let path = Bucket::new("vhost", &config(true).retry(once)).unwrap();
        let err = path.list("dir/").next().unwrap().unwrap_err();
        assert!(matches!(err, S3Error::Request { .. }), "{err:?}");
    });
}
