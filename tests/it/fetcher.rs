//! The ordered fetcher against a real S3 server in this process.

use std::io::Read;
use std::sync::atomic::Ordering;

use haul::{FetchKey, Fetcher, FetcherBuildError};

use crate::support::s3::S3Server;
use crate::support::{guard, wait_until};

/// Deterministic bytes for a key.
fn content(key: &str, size: usize) -> Vec<u8> {
    haul_origin::body(key, size as u64)
}

/// Reads an object whole, whether delivered whole or streamed.
fn read_all(object: haul::Object) -> Vec<u8> {
    if let Some(bytes) = object.bytes() {
        return bytes.to_vec();
    }
    let mut out = Vec::new();
    object
        .into_reader()
        .read_to_end(&mut out)
        .expect("stream reads");
    out
}

fn small_fetcher() -> Fetcher {
    Fetcher::builder()
        .workers(4)
        .per_request_workers(3)
        .part_size(256 << 10)
        .max_whole_object(1 << 20)
        .memory_budget(4 << 20)
        .build()
        .unwrap()
}

#[test]
fn ordered_output_equals_a_sequential_loop_for_mixed_sizes_shuffled_with_duplicates() {
    guard(|| {
        let server = S3Server::start(&["data"]);
        let mut sizes = Vec::new();
        let mut seeds = Vec::new();
        for i in 0..600usize {
            // 0 B up to 3 MiB: mostly small whole objects, some streamed in parts (above the
            // 1 MiB max_whole_object), a few several parts long.
            let size = match i {
                _ if i % 60 == 59 => (3 << 20) - i,
                _ if i % 30 == 29 => (1 << 20) + 17,
                _ => match i % 4 {
                    0 => 0,
                    1 => 1 + i,
                    2 => 16 << 10,
                    _ => (40 << 10) + i,
                },
            };
            seeds.push((format!("m/k-{i:03}"), content(&format!("k-{i:03}"), size)));
            sizes.push(size);
        }
        server.seed_many("data", seeds);
        // 1,000 keys: shuffled (a fixed permutation) over 600 objects, so with duplicates;
        // half with listed sizes, half probed.
        let order: Vec<usize> = (0..1000).map(|j| (j * 37 + 11) % 600).collect();
        let keys: Vec<FetchKey> = order
            .iter()
            .enumerate()
            .map(|(j, &i)| {
                let key = FetchKey::new(format!("m/k-{i:03}"));
                if j % 2 == 0 {
                    key.size(sizes[i] as u64)
                } else {
                    key
                }
            })
            .collect();
        let fetcher = small_fetcher();
        let bucket = server.bucket("data");
        let mut streamed = 0;
        let mut n = 0;
        for (object, &i) in fetcher.fetch(&bucket, keys).zip(&order) {
            let object = object.unwrap_or_else(|e| panic!("k-{i:03}: {e}"));
            assert_eq!(object.key(), format!("m/k-{i:03}"));
            assert_eq!(object.size(), sizes[i] as u64);
            streamed += usize::from(object.is_streamed());
            assert!(
                read_all(object) == content(&format!("k-{i:03}"), sizes[i]),
                "k-{i:03} differs"
            );
            n += 1;
        }
        assert_eq!(n, 1000, "exactly one item per key");
        assert!(streamed > 0, "some objects were streamed in parts");
        let stats = fetcher.stats();
        assert!(stats.budget_peak <= stats.budget_bytes, "{stats:?}");
        assert!(
            wait_until(|| fetcher.stats().budget_in_use == 0),
            "{:?}",
            fetcher.stats()
        );
    });
}

#[test]
fn a_missing_key_yields_an_error_naming_it_in_its_place() {
    guard(|| {
        let server = S3Server::start(&["data"]);
        for k in ["a", "c"] {
            server.seed_file("data", k, k.as_bytes());
        }
        let fetcher = small_fetcher();
        let got: Vec<_> = fetcher
            .fetch(&server.bucket("data"), ["a", "b", "c"])
            .collect();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].as_ref().unwrap().bytes(), Some(&b"a"[..]));
        let err = got[1].as_ref().unwrap_err();
        assert!(err.is_not_found(), "{err}");
        assert_eq!(
            err.to_string(),
            format!("GET s3://{}/b: not found", server.bucket_name("data"))
        );
        assert_eq!(got[2].as_ref().unwrap().bytes(), Some(&b"c"[..]));

        // fail_fast stops at the first error.
        let got: Vec<_> = fetcher
            .fetch(&server.bucket("data"), ["a", "b", "c"])
            .fail_fast()
            .collect();
        assert_eq!(got.len(), 2);
        assert!(got[1].is_err());
    });
}

#[test]
fn keys_with_odd_characters_and_long_names() {
    guard(|| {
        let server = S3Server::start(&["odd"]);
        let bucket = server.bucket("odd");
        // 1,000 bytes in ten path segments (a file system allows 255 bytes per name).
        let long = (0..10)
            .map(|i| format!("{i}{}", "x".repeat(98)))
            .collect::<Vec<_>>()
            .join("/")
            + "y";
        let keys = [
            "sp ace",
            "pl+us",
            "per%cent",
            "qu?est",
            "ha#sh",
            "eq=ual",
            "ünï/cødé ✓",
            long.as_str(),
        ];
        for key in &keys[..7] {
            bucket.put(key, key.as_bytes()).unwrap();
        }
        // s3s-fs answers 500 to a PUT of a 1,000-byte key (S3 allows 1,024), so in process that
        // object is written straight into the server's directory (on an outside store it is a
        // PUT): fetching it is what is tested.
        server.seed_file("odd", &long, long.as_bytes());
        let fetcher = small_fetcher();
        for (object, key) in fetcher.fetch(&bucket, keys.map(String::from)).zip(keys) {
            let object = object.unwrap_or_else(|e| panic!("{key}: {e}"));
            assert_eq!(object.bytes(), Some(key.as_bytes()), "{key}");
        }
    });
}

#[test]
fn an_object_four_times_the_budget_streams_whole_and_correct() {
    guard(|| {
        let server = S3Server::start(&["big"]);
        let size = 8 << 20;
        server.seed_file("big", "huge.bin", &content("huge", size));
        let fetcher = Fetcher::builder()
            .workers(4)
            .per_request_workers(4)
            .part_size(512 << 10)
            .max_whole_object(512 << 10)
            .memory_budget(2 << 20)
            .build()
            .unwrap();
        let bucket = server.bucket("big");
        for key in [
            FetchKey::new("huge.bin"),
            FetchKey::new("huge.bin").size(size as u64),
        ] {
            let mut objects = fetcher.fetch(&bucket, [key]);
            let object = objects.next().unwrap().unwrap();
            assert!(object.is_streamed());
            assert_eq!(object.size(), size as u64);
            let bytes = read_all(object);
            assert!(bytes == content("huge", size));
            assert!(objects.next().is_none());
        }
        assert!(fetcher.stats().budget_peak <= 2 << 20);
    });
}

#[test]
fn a_consumer_holding_objects_stalls_the_workers_instead_of_growing_memory() {
    guard(|| {
        let server = S3Server::start(&["data"]);
        server.seed_many(
            "data",
            (0..40)
                .map(|i| (format!("o-{i:02}"), content("x", 200 << 10)))
                .collect(),
        );
        let fetcher = Fetcher::builder()
            .workers(2)
            .per_request_workers(2)
            .part_size(256 << 10)
            .memory_budget(1 << 20)
            .build()
            .unwrap();
        let keys: Vec<FetchKey> = (0..40)
            .map(|i| FetchKey::new(format!("o-{i:02}")).size(200 << 10))
            .collect();
        let mut objects = fetcher.fetch(server.bucket("data"), keys);
        // Hold five objects (1,000 KiB of the 1,024 KiB budget): nothing more fits.
        let held: Vec<_> = (&mut objects).take(5).map(Result::unwrap).collect();
        // Both workers are now inside a unit, blocked: one waits for bytes, one for its turn.
        assert!(
            wait_until(|| fetcher.stats().busy == 2),
            "{:?}",
            fetcher.stats()
        );
        // Exactly the held objects' bytes: the blocked sixth has reserved nothing.
        assert_eq!(fetcher.stats().budget_in_use, 5 * (200 << 10));
        if let Some(counters) = server.counters() {
            assert_eq!(
                counters.gets.load(Ordering::SeqCst),
                5,
                "no sixth GET while the budget is held"
            );
        }
        drop(held);
        assert_eq!(objects.map(Result::unwrap).count(), 35);
        assert!(fetcher.stats().budget_peak <= 1 << 20);
    });
}

#[test]
fn one_request_never_has_more_gets_in_flight_than_its_cap_and_two_requests_share_the_pool() {
    guard(|| {
        let server = S3Server::start(&["data"]);
        server.seed_many(
            "data",
            (0..60)
                .map(|i| (format!("o-{i:02}"), content("y", 100 << 10)))
                .collect(),
        );
        let fetcher = Fetcher::builder()
            .workers(6)
            .per_request_workers(2)
            .part_size(1 << 20)
            .memory_budget(64 << 20)
            .build()
            .unwrap();
        let bucket = server.bucket("data");
        let keys = || (0..60).map(|i| format!("o-{i:02}")).collect::<Vec<_>>();
        assert_eq!(
            fetcher.fetch(&bucket, keys()).map(Result::unwrap).count(),
            60
        );
        if let Some(counters) = server.counters() {
            let peak = counters.peak.load(Ordering::SeqCst);
            assert!(peak <= 2, "peak {peak}");
        }

        let (a, b) = (
            fetcher.fetch(&bucket, keys()),
            fetcher.fetch(&bucket, keys()),
        );
        let (mut a, mut b) = (a.map(Result::unwrap), b.map(Result::unwrap));
        // Alternate: both requests make progress side by side.
        for _ in 0..60 {
            assert!(a.next().is_some() && b.next().is_some());
        }
        assert!(a.next().is_none() && b.next().is_none());
    });
}

#[test]
fn dropping_objects_after_the_first_item_returns_every_worker_and_byte() {
    guard(|| {
        let server = S3Server::start(&["data"]);
        server.seed_many(
            "data",
            (0..200)
                .map(|i| (format!("o-{i:03}"), content("z", 64 << 10)))
                .collect(),
        );
        let fetcher = small_fetcher();
        let keys: Vec<String> = (0..200).map(|i| format!("o-{i:03}")).collect();
        let mut objects = fetcher.fetch(server.bucket("data"), keys);
        let first = objects.next().unwrap().unwrap();
        drop(objects);
        drop(first);
        assert!(
            wait_until(|| {
                let s = fetcher.stats();
                s.busy == 0 && s.budget_in_use == 0
            }),
            "{:?}",
            fetcher.stats()
        );
        if let Some(counters) = server.counters() {
            assert!(
                counters.gets.load(Ordering::SeqCst) < 200,
                "the request stopped early"
            );
        }
    });
}

#[test]
fn builder_validates_like_the_seed() {
    let err = |b: haul::FetcherBuilder| b.build().unwrap_err().to_string();
    assert_eq!(
        err(Fetcher::builder().workers(0)),
        "workers must be at least 1"
    );
    assert_eq!(
        err(Fetcher::builder().workers(2).per_request_workers(3)),
        "per_request_workers (3) exceeds workers (2)"
    );
    assert!(
        err(Fetcher::builder().memory_budget(1 << 20))
            .starts_with("memory budget of 1048576 bytes cannot hold")
    );
    assert!(matches!(
        Fetcher::builder()
            .memory_budget(256 << 20)
            .max_whole_object(512 << 20)
            .build(),
        Err(FetcherBuildError::WholeAboveBudget { .. })
    ));
}

/// An adaptive pool grows past its start whatever the budget (its threads wait for room), so
/// a budget that holds fewer parts than the start asks for no more than one part: the pool
/// starts with as many threads as the budget holds parts.
#[test]
fn an_adaptive_fetcher_starts_no_more_threads_than_its_budget_holds_parts() {
    guard(|| {
        let fetcher = Fetcher::builder()
            .part_size(8 << 20)
            .memory_budget(24 << 20)
            .build()
            .unwrap();
        assert_eq!(fetcher.stats().workers, 3);
        let roomy = Fetcher::builder().memory_budget(1 << 30).build().unwrap();
        assert_eq!(roomy.stats().workers, haul::DEFAULT_INITIAL_CONCURRENCY);
        let err = Fetcher::builder()
            .part_size(8 << 20)
            .memory_budget(4 << 20)
            .build()
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("memory budget of 4194304 bytes cannot hold one 8388608-byte part"),
            "{err}"
        );
    });
}

#[test]
fn list_then_fetch_streams_a_prefix() {
    guard(|| {
        let server = S3Server::start(&["data"]);
        server.seed_many(
            "data",
            (0..1500)
                .map(|i| (format!("p/{i:04}"), format!("{i}").into_bytes()))
                .collect(),
        );
        let fetcher = small_fetcher();
        let bucket = server.bucket("data");
        let listing = bucket.list("p/").map(|o| FetchKey::from(o.unwrap()));
        let mut n = 0;
        for (i, object) in fetcher.fetch(&bucket, listing).enumerate() {
            assert_eq!(object.unwrap().bytes(), Some(format!("{i}").as_bytes()));
            n += 1;
        }
        assert_eq!(n, 1500);
    });
}

#[test]
fn fetch_and_list_work_over_https() {
    guard(|| {
        let server = S3Server::start_tls(&["tls"]);
        assert!(server.endpoint().starts_with("https://127.0.0.1:"));
        for i in 0..20 {
            server.seed_file(
                "tls",
                &format!("k-{i:02}"),
                &content(&format!("t{i}"), 70_000 + i),
            );
        }
        server.seed_file("tls", "large", &content("large", 3 << 20));
        let bucket = server.bucket("tls");
        let listed: Vec<FetchKey> = bucket
            .list("")
            .map(|o| FetchKey::from(o.unwrap()))
            .collect();
        assert_eq!(listed.len(), 21);
        let fetcher = small_fetcher();
        let mut n = 0;
        for object in fetcher.fetch(&bucket, listed) {
            let object = object.unwrap();
            let expected = match object.key() {
                "large" => content("large", 3 << 20),
                key => {
                    let i: usize = key[2..].parse().unwrap();
                    content(&format!("t{i}"), 70_000 + i)
                }
            };
            assert!(read_all(object) == expected);
            n += 1;
        }
        assert_eq!(n, 21);

        // Without the test root the certificate is refused.
        let untrusting = haul::S3Config::new(server.endpoint(), "us-east-1").credentials(
            crate::support::s3::ACCESS_KEY,
            crate::support::s3::SECRET_KEY,
        );
        let bucket = haul::Bucket::new("tls", &untrusting).unwrap();
        let err = bucket.list("").next().unwrap().unwrap_err();
        assert!(matches!(err, haul::S3Error::Request { .. }), "{err}");
    });
}

/// A fetcher of one worker over an in-process store holding `keys` objects `k-0`... of
/// 1,000 bytes.
fn one_worker(keys: usize) -> (S3Server, haul::Bucket, Fetcher) {
    let server = S3Server::start(&["keys"]);
    server.seed_many(
        "keys",
        (0..keys)
            .map(|i| (format!("k-{i}"), content(&format!("k-{i}"), 1000)))
            .collect(),
    );
    let bucket = server.bucket("keys");
    let fetcher = Fetcher::builder()
        .workers(1)
        .per_request_workers(1)
        .build()
        .unwrap();
    (server, bucket, fetcher)
}

#[test]
fn a_panicking_key_iterator_ends_its_request_with_an_error_and_the_pool_survives() {
    guard(|| {
        let (_server, bucket, fetcher) = one_worker(6);
        let keys = (0..6).map(|i| {
            assert!(i != 3, "no key {i}");
            format!("k-{i}")
        });
        let got: Vec<Result<String, String>> = fetcher
            .fetch(&bucket, keys)
            .map(|item| item.map(|o| o.key().to_owned()).map_err(|e| e.to_string()))
            .collect();
        assert_eq!(got.len(), 4, "{got:?}");
        assert_eq!(
            got[..3],
            [
                Ok("k-0".to_owned()),
                Ok("k-1".to_owned()),
                Ok("k-2".to_owned())
            ]
        );
        let error = got[3].as_ref().unwrap_err();
        assert!(
            error.contains("the key iterator panicked: no key 3"),
            "{error}"
        );
        // The pool's one thread survived: the next request is served, in order.
        let next: Vec<String> = fetcher
            .fetch(&bucket, ["k-4", "k-5"])
            .map(|item| item.unwrap().key().to_owned())
            .collect();
        assert_eq!(next, ["k-4", "k-5"]);
        drop(fetcher); // would panic if a pool thread had
    });
}

#[test]
fn a_key_iterator_that_blocks_holds_no_lock_that_drop_or_a_probe_needs() {
    guard(|| {
        let server = S3Server::start(&["keys"]);
        server.seed_file("keys", "first", &content("first", 5000));
        let bucket = server.bucket("keys");
        let fetcher = Fetcher::builder()
            .workers(2)
            .per_request_workers(2)
            .build()
            .unwrap();
        // Keys fed from a channel: the second is sent only once the first has arrived.
        let (feed, keys) = crossbeam_channel::unbounded::<FetchKey>();
        feed.send(FetchKey::new("first")).unwrap(); // size unknown: a probe
        let mut objects = fetcher.fetch(&bucket, keys);
        let first = objects.next().unwrap().unwrap();
        assert!(first.bytes() == Some(&content("first", 5000)[..]));
        // A worker is now blocked in the iterator; dropping the request still returns.
        drop(objects);
        drop(first);
        drop(feed); // ends the iterator, so the Fetcher's drop can join its threads
        drop(fetcher);
    });
}

#[test]
fn a_caller_that_stops_taking_items_bounds_what_waits_for_it() {
    guard(|| {
        // A store that answers 404 at once (the origin, reached as a bucket), and keys without
        // end: each becomes an error that holds no budget.
        let origin = haul_origin::Origin::start().unwrap();
        let mut not_found = haul_origin::Faults::default();
        not_found.status = Some(404);
        origin.set_faults(not_found);
        let config = haul::S3Config::new(origin.url(""), "us-east-1").credentials("o", "o");
        let bucket = haul::Bucket::new("missing", &config).unwrap();
        let fetcher = Fetcher::builder().workers(8).build().unwrap();
        let pulled = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (crossed, beyond) = crossbeam_channel::bounded(1);
        let window = haul::MAX_ITEMS_AHEAD;
        let counter = std::sync::Arc::clone(&pulled);
        let keys = (0u64..).map(move |i| {
            counter.fetch_add(1, Ordering::SeqCst);
            if i == window + 64 {
                let _ = crossed.try_send(());
            }
            format!("missing-{i}")
        });
        let mut objects = fetcher.fetch(&bucket, keys);
        assert!(objects.next().unwrap().unwrap_err().is_not_found());
        // The window fills up; without a bound the reorder buffer then grows on as fast as
        // the store answers 404s (64 more keys took the unbounded fetcher about 0.3 s in a
        // debug build); with one, no key past the window is ever asked for.
        assert!(wait_until(|| pulled.load(Ordering::SeqCst) >= window));
        let reached = beyond.recv_timeout(std::time::Duration::from_secs(2));
        assert!(
            reached.is_err(),
            "{} keys pulled while the caller held the first item",
            pulled.load(Ordering::SeqCst)
        );
        assert!(pulled.load(Ordering::SeqCst) <= window + 2);
        drop(objects);
    });
}
