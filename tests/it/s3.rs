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
