//! Concurrency that finds its own level: the downloader's per-host limit against a server
//! that is busy beyond a number of requests, behind an emulated WAN, and the threads it
//! starts for it.

use std::time::Duration;

use haul::{Concurrency, DEFAULT_INITIAL_CONCURRENCY, Detail, Downloader, JobSpec, RetryPolicy};
use haul_origin::Origin;
use haul_wan::{Wan, WanConfig};

use crate::support::{TestDir, guard, guard_for, wait_until};

const WAIT: Duration = Duration::from_secs(60);

/// A downloader into `dir` with the default (adaptive) concurrency.
fn adaptive(dir: &TestDir) -> Downloader {
    Downloader::builder().mountpath(dir.path()).build().unwrap()
}

/// A downloader into `dir` with `n` workers, pinned.
fn pinned(dir: &TestDir, n: usize) -> Downloader {
    Downloader::builder()
        .mountpath(dir.path())
        .workers_per_target(n)
        .build()
        .unwrap()
}

/// A downloader into `dir` whose streams' tails are never split: on a loaded machine a
/// stream takes long enough for its tail to be, and the pieces' requests are not what the
/// tests that count requests count.
fn without_tail_split(dir: &TestDir) -> Downloader {
    Downloader::builder()
        .mountpath(dir.path())
        .split_tails(false)
        .build()
        .unwrap()
}

/// `server` behind an emulated WAN of 40 ms round trips (the rest of the emulator's defaults).
fn across_40ms(server: std::net::SocketAddr) -> Wan {
    Wan::start(server, WanConfig::default().rtt(Duration::from_millis(40))).unwrap()
}

/// Twenty attempts within two to three seconds (the default's five take about four): room
/// for a burst of 503s while the limit comes down, on a machine slow enough to stretch it.
fn quick_retries() -> RetryPolicy {
    RetryPolicy::default()
        .attempts(20)
        .initial_backoff(Duration::from_millis(5))
        .max_backoff(Duration::from_millis(200))
}

#[test]
fn a_server_busy_beyond_six_requests_gets_about_six_and_every_object_lands() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        let d = adaptive(&dir);
        let template = origin.url("/busy/o-{000..999}.bin?size=4096&delay_ms=25&busy_above=6");
        let job = d
            .submit(JobSpec::range(template).retry(quick_retries()))
            .unwrap();
        assert!(d.wait(job, WAIT).unwrap());
        let status = d.status(job, Detail::OnlyActive).unwrap();
        let flow = &d.flows()[0];
        assert_eq!(
            (status.finished, status.failed),
            (1000, 0),
            "{status:?} {flow:?} 503s: {}",
            origin.stats().status_count(503)
        );
        assert!(flow.throttles > 0, "the 503s were seen: {flow:?}");
        // The limit backs off to about what the server takes: at most twice it, where a
        // limit that ignored the 503s would have stayed at its start or climbed.
        assert!(flow.limit <= 12, "{flow:?}");
        // And the 503s stay few: backing off, it sees 10 to 100 of them here; with the
        // throttle switched off the limit stays above what the server takes, one to three
        // objects run out of their 20 attempts and the 503s number about a thousand.
        let stats = origin.stats();
        assert!(
            stats.status_count(503) < 250,
            "{} 503s for 1000 objects",
            stats.status_count(503)
        );
    });
}

#[test]
fn a_burst_past_what_a_server_takes_is_not_refused_again_and_again() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        // Thirty-two at once to a server that answers 503 beyond four: the limit halves
        // once a round, and the refused transfers wait at the gate for their retries, so
        // the cut holds them too. Retrying in the places they held, they met about two
        // hundred 503s (the limit cut, and the retries beyond it refused again); now about
        // fifty.
        let d = Downloader::builder()
            .mountpath(dir.path())
            .concurrency(Concurrency::adaptive().initial(32))
            .build()
            .unwrap();
        let template = origin.url("/burst/o-{000..299}.bin?size=4096&delay_ms=25&busy_above=4");
        let job = d
            .submit(JobSpec::range(template).retry(quick_retries()))
            .unwrap();
        assert!(d.wait(job, WAIT).unwrap());
        let status = d.status(job, Detail::OnlyActive).unwrap();
        assert_eq!((status.finished, status.failed), (300, 0), "{status:?}");
        let refused = origin.stats().status_count(503);
        assert!(refused < 100, "{refused} 503s for 300 objects");
    });
}

#[test]
fn across_a_wan_the_limit_rises_past_where_it_starts_and_a_pinned_one_stays() {
    guard_for(Duration::from_secs(120), || {
        let origin = Origin::start().unwrap();
        let wan = across_40ms(origin.addr());
        let template = format!("http://{}/wan/o-{{000..599}}.bin?size=16384", wan.addr());
        let dir = TestDir::new();
        let adaptive = adaptive(&dir);
        let job = adaptive.submit(JobSpec::range(&template)).unwrap();
        assert!(adaptive.wait(job, WAIT).unwrap());
        let status = adaptive.status(job, Detail::All).unwrap();
        assert_eq!(status.finished, 600, "{status:?}");
        let flow = &adaptive.flows()[0];
        // Each transfer is one round trip: more of them at once is more bytes a second,
        // so the limit doubles from its start while that holds.
        assert!(flow.peak > DEFAULT_INITIAL_CONCURRENCY, "{flow:?}");
        assert!(
            adaptive.joggers() > DEFAULT_INITIAL_CONCURRENCY,
            "joggers started as needed"
        );
        // Each transfer in flight at once needed a connection of its own across the WAN.
        let connections = wan.stats().connections;
        assert!(connections > 16, "{connections} connections");
        drop(adaptive);

        let dir = TestDir::new();
        let pinned = pinned(&dir, 4);
        let job = pinned
            .submit(JobSpec::range(template.replace("{000..599}", "{000..099}")))
            .unwrap();
        assert!(pinned.wait(job, WAIT).unwrap());
        assert_eq!(pinned.status(job, Detail::All).unwrap().finished, 100);
        let pinned_connections = wan.stats().connections - connections;
        let flow = &pinned.flows()[0];
        // Four transfers at a time; a hedge (at most one in twenty) takes a connection of
        // its own.
        assert!(
            pinned_connections <= 4 + flow.hedged,
            "{pinned_connections} connections, {flow:?}"
        );
        assert_eq!((flow.limit, flow.peak), (4, 4), "{flow:?}");
        assert_eq!(pinned.joggers(), 4);
    });
}

#[test]
fn an_abort_frees_transfers_waiting_at_the_gate() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        // Two targets share the host's gate of one: one transfer holds it (parked at the
        // origin's gate), the other target's jogger waits for it.
        let d = Downloader::builder()
            .mountpath(dir.path().join("a"))
            .mountpath(dir.path().join("b"))
            .concurrency(Concurrency::adaptive().between(1, 1))
            .build()
            .unwrap();
        let job = d
            .submit(JobSpec::range(
                origin.url("/held/o-{00..19}.bin?size=100000&gate_after=1000"),
            ))
            .unwrap();
        assert!(origin.gate().wait_arrivals(1, WAIT));
        assert!(wait_until(|| d
            .flows()
            .first()
            .is_some_and(|f| f.in_flight == 1)
            && d.status(job, Detail::OnlyActive).unwrap().in_flight.len()
                == 1));
        d.abort(job).unwrap();
        assert!(
            d.wait(job, WAIT).unwrap(),
            "the abort ended the waiting too"
        );
        let status = d.status(job, Detail::All).unwrap();
        assert_eq!(status.finished, 0, "{status:?}");
        assert_eq!(
            origin.gate().arrivals(),
            1,
            "nothing else reached the origin"
        );
        origin.gate().release();
    });
}

/// Threads of this process whose name starts with `prefix` (names are cut at 15 bytes).
fn threads_named(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|tasks| {
            tasks
                .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                .filter(|name| name.starts_with(prefix))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn a_pool_that_grows_never_starts_more_threads_than_its_cap() {
    guard_for(Duration::from_secs(120), || {
        let origin = Origin::start().unwrap();
        let wan = across_40ms(origin.addr());
        // 1,000 objects of 16 KiB, each a round trip: the limit climbs towards its cap,
        // its responses arriving together on hundreds of threads, each of which may start
        // more. Each start is counted against the cap before its thread is spawned: counted
        // after, they started 266 to 921 joggers, and a fetcher up to 786 threads.
        let cap = haul::DEFAULT_MAX_CONCURRENCY;
        let dir = TestDir::new();
        let d = Downloader::builder()
            .mountpath(dir.path().join("cap7"))
            .build()
            .unwrap();
        let template = format!("http://{}/cap/o-{{000..999}}.bin?size=16384", wan.addr());
        let job = d.submit(JobSpec::range(template)).unwrap();
        assert!(d.wait(job, WAIT).unwrap());
        assert_eq!(d.status(job, Detail::All).unwrap().finished, 1000);
        let joggers = threads_named("haul-jog-cap7-");
        assert!(joggers <= cap, "{joggers} joggers, cap {cap}");
        assert_eq!(joggers, d.joggers());
        drop(d);

        let fetcher = haul::Fetcher::builder().build().unwrap();
        let at = wan.addr();
        let keys = (0..1000).map(move |i| format!("http://{at}/cap/f-{i:03}.bin?size=16384"));
        let fetched = fetcher
            .fetch(haul::Web::default(), keys)
            .filter(Result::is_ok)
            .count();
        assert_eq!(fetched, 1000);
        let workers = fetcher.stats().workers;
        assert!(workers <= cap, "{workers} pool threads, cap {cap}");
    });
}

#[test]
fn the_joggers_started_as_the_limit_grew_are_joined_on_drop() {
    guard_for(Duration::from_secs(120), || {
        let origin = Origin::start().unwrap();
        let wan = Wan::start(origin.addr(), WanConfig::default()).unwrap();
        let dir = TestDir::new();
        let mountpath = dir.path().join("jq7");
        let d = Downloader::builder().mountpath(&mountpath).build().unwrap();
        let template = format!("http://{}/j/o-{{000..399}}.bin?size=8192", wan.addr());
        let job = d.submit(JobSpec::range(template)).unwrap();
        assert!(d.wait(job, WAIT).unwrap());
        let started = d.joggers();
        assert!(started > 8, "the pool grew: {started}");
        assert_eq!(threads_named("haul-jog-jq7-"), started);
        drop(d);
        assert_eq!(threads_named("haul-jog-jq7-"), 0, "every jogger joined");
    });
}

#[test]
fn a_large_body_is_read_from_its_first_answer_even_on_a_connection_for_small_ones() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        let d = without_tail_split(&dir);
        let size = 20 << 20;
        for name in ["first", "second"] {
            let url = origin.url(&format!("/large/{name}.bin?size={size}"));
            let job = d.submit(JobSpec::single(url)).unwrap();
            assert!(d.wait(job, WAIT).unwrap());
            let status = d.status(job, Detail::All).unwrap();
            assert_eq!((status.finished, status.bytes), (1, size), "{status:?}");
        }
        let stats = origin.stats();
        // The host's first large body came on a connection with small buffers: it is read
        // from there (asked again, it cost a request and a new connection's round trips),
        // and the host's later requests go out with large buffers.
        assert_eq!(stats.requests_for("/large/first.bin"), 1, "{stats:?}");
        assert_eq!(stats.requests_for("/large/second.bin"), 1, "{stats:?}");
        for name in ["first", "second"] {
            let landed = std::fs::read(dir.path().join(format!("{name}.bin"))).unwrap();
            assert!(
                landed == haul_origin::body(&format!("/large/{name}.bin"), size),
                "{name}"
            );
        }
    });
}

#[test]
fn the_parts_of_a_large_object_are_asked_once_each() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        let d = without_tail_split(&dir);
        let size = 80 << 20;
        let url = origin.url(&format!("/large/parts.bin?size={size}"));
        let parts = haul::PartsPolicy::new(4)
            .min_object_bytes(16 << 20)
            .part_bytes(16 << 20);
        let job = d.submit(JobSpec::single(url).parts(parts)).unwrap();
        assert!(d.wait(job, WAIT).unwrap());
        let status = d.status(job, Detail::All).unwrap();
        assert_eq!((status.finished, status.bytes), (1, size), "{status:?}");
        // The opening GET and its four parts: one request each, none asked again.
        let stats = origin.stats();
        assert_eq!(stats.requests_for("/large/parts.bin"), 5, "{stats:?}");
        let landed = std::fs::read(dir.path().join("parts.bin")).unwrap();
        assert!(
            landed == haul_origin::body("/large/parts.bin", size),
            "the bytes"
        );
    });
}

/// A job of `n` objects of 4 KiB, each answered after 25 ms, but the one at `straggler`
/// whose first request is answered after `straggle_ms`.
fn with_a_straggler(origin: &Origin, n: usize, straggler: usize, straggle_ms: u64) -> JobSpec {
    JobSpec::multi((0..n).map(|i| {
        let faults = if i == straggler {
            format!("delay_ms={straggle_ms}&faults_first=1")
        } else {
            "delay_ms=25".to_owned()
        };
        origin.url(&format!("/s/o-{i:03}.bin?size=4096&{faults}"))
    }))
}

#[test]
fn a_straggler_is_hedged_and_the_hedge_wins_while_hedges_stay_few() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        let d = pinned(&dir, 4);
        let started = std::time::Instant::now();
        let job = d
            .submit(with_a_straggler(&origin, 200, 150, 30_000))
            .unwrap();
        // Unhedged, the straggler alone would hold the job for 30 s.
        assert!(
            d.wait(job, Duration::from_secs(20)).unwrap(),
            "the straggler held the job: {:?}",
            d.flows()
        );
        let took = started.elapsed();
        let status = d.status(job, Detail::All).unwrap();
        assert_eq!(status.finished, 200, "{status:?}");
        let flow = &d.flows()[0];
        assert!(flow.hedges_won >= 1, "{flow:?}");
        assert!(flow.hedged * 20 <= 200, "at most one in twenty: {flow:?}");
        let stats = origin.stats();
        assert_eq!(
            stats.requests_for("/s/o-150.bin"),
            2,
            "the straggler and its hedge"
        );
        // A hedge counts when it is started; one whose race ended before it was sent never
        // reached the origin.
        assert!(
            stats.requests > 200 && stats.requests <= 200 + flow.hedged,
            "{flow:?} {}",
            stats.requests
        );
        assert!(took < Duration::from_secs(20), "{took:?}");
    });
}

#[test]
fn without_hedging_the_straggler_sets_the_end() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        let d = Downloader::builder()
            .mountpath(dir.path())
            .workers_per_target(4)
            .hedging(false)
            .build()
            .unwrap();
        let job = d.submit(with_a_straggler(&origin, 100, 50, 2_000)).unwrap();
        // The other 99 take about 0.6 s at 4 at a time; the straggler takes 2 s.
        assert!(!d.wait(job, Duration::from_millis(1_500)).unwrap());
        assert!(d.wait(job, WAIT).unwrap());
        let flow = &d.flows()[0];
        assert_eq!((flow.hedged, origin.stats().requests), (0, 100), "{flow:?}");
    });
}

/// A downloader with 16 pinned workers whose host has known busy times: 32 objects, half
/// answered after 25 ms and half after 1.5 s, so the 95th percentile of its first-response
/// times (what a request is hedged after while the host is busy) is 1.5 s, twice their
/// median 3 s, while their lower quartile is 25 ms.
fn after_busy_times(origin: &Origin, dir: &TestDir) -> Downloader {
    let d = pinned(dir, 16);
    let busy = (0..32).map(|i| {
        let ms = if i < 16 { 25 } else { 1_500 };
        origin.url(&format!("/busy/{i:02}.bin?size=4096&delay_ms={ms}"))
    });
    let job = d.submit(JobSpec::multi(busy)).unwrap();
    assert!(d.wait(job, WAIT).unwrap());
    assert_eq!(d.flows()[0].hedged, 0, "{:?}", d.flows());
    d
}

/// The straggler's URL: its first request is answered after 30 s, a second at once.
fn straggler(origin: &Origin) -> String {
    origin.url("/tail/straggler.bin?size=4096&delay_ms=30000&faults_first=1")
}

#[test]
fn once_the_host_drains_a_straggler_is_hedged_without_waiting_out_the_busy_times() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        let d = after_busy_times(&origin, &dir);
        // Sixteen at once: the host is busy when the straggler's request is sent (it is
        // armed to be hedged after 3 s); the other fifteen answer after 25 ms, and then
        // nothing waits for the host and most of its room is free.
        let quick = (0..15).map(|i| origin.url(&format!("/tail/{i:02}.bin?size=4096&delay_ms=25")));
        let started = std::time::Instant::now();
        let job = d
            .submit(JobSpec::multi(quick.chain([straggler(&origin)])))
            .unwrap();
        assert!(d.wait(job, Duration::from_secs(20)).unwrap());
        let took = started.elapsed();
        assert_eq!(d.status(job, Detail::All).unwrap().finished, 16);
        // Hedged at the busy times' delay it would take 3 s; on a drained host a response
        // later than twice the quick times' lower quartile is a straggler's.
        assert!(took < Duration::from_secs(1), "{took:?} {:?}", d.flows());
        assert_eq!(origin.stats().requests_for("/tail/straggler.bin"), 2);
        assert_eq!(d.flows()[0].hedges_won, 1, "{:?}", d.flows());
    });
}

#[test]
fn a_lone_straggler_on_an_idle_host_is_hedged_after_the_quick_times() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        let d = after_busy_times(&origin, &dir);
        let started = std::time::Instant::now();
        let job = d.submit(JobSpec::single(straggler(&origin))).unwrap();
        assert!(d.wait(job, Duration::from_secs(20)).unwrap());
        let took = started.elapsed();
        assert!(took < Duration::from_secs(1), "{took:?} {:?}", d.flows());
        assert_eq!(origin.stats().requests_for("/tail/straggler.bin"), 2);
    });
}

#[test]
fn a_host_slow_as_a_whole_wastes_no_hedges_and_its_straggler_still_gets_one() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        let d = pinned(&dir, 16);
        // Known first: answers after 25 ms (a request is hedged after about 50 ms).
        let quick = (0..48).map(|i| origin.url(&format!("/q/{i:02}.bin?size=4096&delay_ms=25")));
        let job = d.submit(JobSpec::multi(quick)).unwrap();
        assert!(d.wait(job, WAIT).unwrap());
        assert_eq!(d.flows()[0].hedged, 0, "{:?}", d.flows());
        // Then the host turns slow as a whole: every answer after 400 ms, so a request late
        // by the quick times is not late beside the requests sent with it, and a hedge
        // would wait as long. One of them is a straggler even so: 30 s, a second request
        // answered as the rest are.
        let slow = (0..32).map(|i| {
            let faults = if i == 20 {
                "delay_ms=30000&faults_first=1".to_owned()
            } else {
                "delay_ms=400".to_owned()
            };
            origin.url(&format!("/slow/{i:02}.bin?size=4096&{faults}"))
        });
        let job = d.submit(JobSpec::multi(slow)).unwrap();
        assert!(d.wait(job, Duration::from_secs(20)).unwrap());
        assert_eq!(d.status(job, Detail::All).unwrap().finished, 32);
        // Its allowance (one in twenty of 80 requests: 4) went to the straggler, not to
        // requests that were only as slow as the host.
        let flow = &d.flows()[0];
        assert_eq!((flow.hedged, flow.hedges_won), (1, 1), "{flow:?}");
        let stats = origin.stats();
        assert_eq!(stats.requests_for("/slow/20.bin"), 2);
        assert_eq!(stats.requests, 81, "{flow:?}");
    });
}

#[test]
fn an_abort_ends_a_request_and_its_hedge_at_once() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        let d = pinned(&dir, 2);
        // The 40th request waits 30 s for its headers, every time: it is hedged once the
        // requests sent after it have answered, and its hedge waits too.
        let spec = JobSpec::multi((0..60).map(|i| {
            let delay = if i == 40 { 30_000 } else { 25 };
            origin.url(&format!("/a/o-{i:03}.bin?size=1000&delay_ms={delay}"))
        }));
        let job = d.submit(spec).unwrap();
        assert!(wait_until(|| d
            .flows()
            .first()
            .is_some_and(|f| f.hedged >= 1)));
        let aborted = std::time::Instant::now();
        d.abort(job).unwrap();
        assert!(d.wait(job, Duration::from_secs(5)).unwrap());
        assert!(aborted.elapsed() < Duration::from_secs(5));
        drop(d); // joins the hedge threads too
    });
}

#[test]
fn an_ordered_fetch_across_a_wan_grows_its_pool_and_keeps_the_order() {
    guard_for(Duration::from_secs(120), || {
        let server = crate::support::s3::S3Server::start(&["far"]);
        let keys: Vec<String> = (0..400).map(|i| format!("k/{i:03}")).collect();
        let size = 16384;
        server.seed_many(
            "far",
            keys.iter()
                .map(|k| (k.clone(), haul_origin::body(k, size)))
                .collect(),
        );
        let wan = across_40ms(server.socket_addr());
        let scheme = server.endpoint().split("://").next().unwrap().to_owned();
        let far = server.config_at(format!("{scheme}://{}", wan.addr()));
        let bucket = haul::Bucket::new(&server.bucket_name("far"), &far).unwrap();
        let listed = |n: usize| -> Vec<haul::FetchKey> {
            keys[..n]
                .iter()
                .map(|k| haul::FetchKey::new(k.as_str()).size(size))
                .collect()
        };

        let adaptive = haul::Fetcher::builder().build().unwrap();
        assert_eq!(
            adaptive.stats().workers,
            DEFAULT_INITIAL_CONCURRENCY,
            "the initial limit's threads"
        );
        for (object, key) in adaptive.fetch(&bucket, listed(400)).zip(&keys) {
            let object = object.unwrap();
            assert_eq!(object.key(), key, "in the caller's order");
            assert!(
                object.bytes().unwrap() == haul_origin::body(key, size),
                "{key}"
            );
        }
        // Each GET costs a round trip: more at once is more bytes a second.
        assert!(
            adaptive.stats().workers > DEFAULT_INITIAL_CONCURRENCY,
            "{:?}",
            adaptive.stats()
        );

        let pinned = haul::Fetcher::builder().workers(4).build().unwrap();
        assert_eq!(
            pinned
                .fetch(&bucket, listed(40))
                .filter(Result::is_ok)
                .count(),
            40
        );
        assert_eq!(pinned.stats().workers, 4);
    });
}

/// A fetcher of 16 pinned workers, each request up to 16 at once.
fn fetcher_of_16() -> haul::Fetcher {
    haul::Fetcher::builder()
        .workers(16)
        .per_request_workers(16)
        .build()
        .unwrap()
}

/// Fetches `urls` as keys of unknown size (each probed by its GET), checking each body;
/// returns how long it took.
fn fetch_unsized(fetcher: &haul::Fetcher, urls: &[String]) -> Duration {
    let started = std::time::Instant::now();
    let keys = urls
        .iter()
        .map(|u| haul::FetchKey::new(u.as_str()))
        .collect::<Vec<_>>();
    for (object, url) in fetcher.fetch(haul::Web::default(), keys).zip(urls) {
        let object = object.unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(object.size(), 4096, "{url}");
    }
    started.elapsed()
}

#[test]
fn a_straggler_among_urls_of_unknown_size_is_hedged_in_an_ordered_fetch() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let fetcher = fetcher_of_16();
        // Known first: answers after 25 ms, so a late one is hedged after about 50 ms.
        let quick: Vec<String> = (0..48)
            .map(|i| origin.url(&format!("/q/{i:02}.bin?size=4096&delay_ms=25")))
            .collect();
        fetch_unsized(&fetcher, &quick);
        assert_eq!(fetcher.flows()[0].hedged, 0, "{:?}", fetcher.flows());
        // Then 32 more, one of them a straggler: 30 s for its first request, a second
        // answered at once.
        let urls: Vec<String> = (0..32)
            .map(|i| {
                let faults = if i == 20 {
                    "delay_ms=30000&faults_first=1"
                } else {
                    "delay_ms=25"
                };
                origin.url(&format!("/u/{i:02}.bin?size=4096&{faults}"))
            })
            .collect();
        let took = fetch_unsized(&fetcher, &urls);
        assert!(
            took < Duration::from_secs(10),
            "{took:?} {:?}",
            fetcher.flows()
        );
        let flow = &fetcher.flows()[0];
        assert_eq!((flow.hedged, flow.hedges_won), (1, 1), "{flow:?}");
        assert_eq!(origin.stats().requests_for("/u/20.bin"), 2);
    });
}

#[test]
fn once_an_ordered_fetch_runs_out_of_keys_its_straggler_is_hedged_without_waiting_out_the_busy_times()
 {
    guard(|| {
        let origin = Origin::start().unwrap();
        let fetcher = fetcher_of_16();
        // Busy times first, as `after_busy_times`: a request sent while the host is busy is
        // hedged after 3 s; one sent or still out once it has drained, after 50 ms.
        let busy: Vec<String> = (0..32)
            .map(|i| {
                let ms = if i < 16 { 25 } else { 1_500 };
                origin.url(&format!("/busy/{i:02}.bin?size=4096&delay_ms={ms}"))
            })
            .collect();
        fetch_unsized(&fetcher, &busy);
        assert_eq!(fetcher.flows()[0].hedged, 0, "{:?}", fetcher.flows());
        // Sixteen at once, the straggler last: once the other fifteen have answered, the
        // request has no key left and the host is idle.
        let mut urls: Vec<String> = (0..15)
            .map(|i| origin.url(&format!("/tail/{i:02}.bin?size=4096&delay_ms=25")))
            .collect();
        urls.push(straggler(&origin));
        let took = fetch_unsized(&fetcher, &urls);
        assert!(
            took < Duration::from_secs(1),
            "{took:?} {:?}",
            fetcher.flows()
        );
        assert_eq!(origin.stats().requests_for("/tail/straggler.bin"), 2);
        assert_eq!(fetcher.flows()[0].hedges_won, 1, "{:?}", fetcher.flows());
    });
}

#[test]
fn a_large_object_splits_by_itself_when_the_concurrency_adapts() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let size = 100 << 20;
        let dir = TestDir::new();
        let adaptive = adaptive(&dir);
        let url = origin.url(&format!("/split/big.bin?size={size}"));
        let job = adaptive.submit(JobSpec::single(&url)).unwrap();
        assert!(adaptive.wait(job, WAIT).unwrap());
        let status = adaptive.status(job, Detail::All).unwrap();
        assert_eq!((status.finished, status.bytes), (1, size), "{status:?}");
        let landed = std::fs::read(dir.path().join("big.bin")).unwrap();
        assert!(
            landed == haul_origin::body("/split/big.bin", size),
            "the bytes"
        );
        // A plain GET opened it; the rest past its first 64 MiB came in ranged parts.
        let stats = origin.stats();
        assert_eq!(stats.status_count(200), 1, "{:?}", stats.statuses);
        assert!(stats.status_count(206) >= 1, "{:?}", stats.statuses);
        drop(adaptive);

        origin.reset_stats();
        let dir = TestDir::new();
        // Pinned to one jogger (with more, an idle one may take a piece of a slow stream's
        // tail: `tail.rs`).
        let pinned = pinned(&dir, 1);
        let job = pinned.submit(JobSpec::single(&url)).unwrap();
        assert!(pinned.wait(job, WAIT).unwrap());
        let stats = origin.stats();
        // Pinned: no automatic split, one stream.
        assert_eq!(
            (stats.status_count(200), stats.status_count(206)),
            (1, 0),
            "{:?}",
            stats.statuses
        );
    });
}

#[test]
fn an_automatic_split_from_a_server_that_lies_about_ranges_lands_the_right_bytes() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let size = 80 << 20;
        // Ranges answered from offset 0 (in a 206 that says so); and an ETag that changes
        // on every request, so no part matches the opening response's version.
        for (path, lie) in [
            ("/lie/zero.bin", "range_from_zero=1"),
            ("/lie/changing.bin", "etag=changing"),
        ] {
            let dir = TestDir::new();
            let d = adaptive(&dir);
            let url = origin.url(&format!("{path}?size={size}&{lie}"));
            let job = d
                .submit(JobSpec::single(url).retry(quick_retries()))
                .unwrap();
            assert!(d.wait(job, WAIT).unwrap());
            let status = d.status(job, Detail::All).unwrap();
            assert_eq!(status.finished, 1, "{lie}: {status:?}");
            let name = path.rsplit('/').next().unwrap();
            let landed = std::fs::read(dir.path().join(name)).unwrap();
            assert!(
                landed == haul_origin::body(path, size),
                "{lie}: wrong bytes landed"
            );
        }
    });
}

/// A rerun that revalidates unchanged files carries no bodies, only requests (each answered
/// 416: the file is current). Each still measures the host, so the limit climbs as it would
/// for a download; counted by bytes alone, they measured nothing and the limit stayed at its
/// start.
#[test]
fn revalidations_of_unchanged_files_raise_the_limit_too() {
    guard_for(Duration::from_secs(120), || {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        let template = origin.url("/reval/o-{000..599}.bin?size=1024&delay_ms=20");
        let first = pinned(&dir, 32);
        let job = first.submit(JobSpec::range(&template)).unwrap();
        assert!(first.wait(job, WAIT).unwrap());
        assert_eq!(first.status(job, Detail::OnlyActive).unwrap().finished, 600);
        drop(first);
        origin.reset_stats();

        let again = adaptive(&dir);
        let spec = JobSpec::range(&template).existing(haul::Existing::Revalidate);
        let job = again.submit(spec).unwrap();
        assert!(again.wait(job, WAIT).unwrap());
        let status = again.status(job, Detail::OnlyActive).unwrap();
        assert_eq!(
            (status.skipped, status.finished, status.failed),
            (600, 0, 0),
            "{status:?}"
        );
        let flow = &again.flows()[0];
        // The limit rose past its start (it may settle back by the end, when the delays
        // climb on a loaded machine): more were in flight at once than it starts with.
        assert!(flow.peak > DEFAULT_INITIAL_CONCURRENCY, "{flow:?}");
        assert_eq!(flow.bytes, 0, "no body came");
        // One request each, and the few hedges the 20 ms think time calls for.
        let answered = origin.stats().status_count(416);
        assert!(
            (600..=600 + flow.hedged).contains(&answered),
            "{answered}: {flow:?}"
        );
    });
}

/// A host's status says the path's base time to first response, as its loop measured it
/// (the yardstick a queue is told by).
#[test]
fn a_hosts_status_says_its_base_time_to_first_response() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        let d = adaptive(&dir);
        let template = origin.url("/base/o-{00..79}.bin?size=1000&delay_ms=20");
        assert_eq!(d.flows(), Vec::new(), "no host yet");
        let job = d.submit(JobSpec::range(template)).unwrap();
        assert!(d.wait(job, WAIT).unwrap());
        assert_eq!(d.status(job, Detail::OnlyActive).unwrap().finished, 80);
        let flows = d.flows();
        assert!(
            flows[0]
                .base_first_response
                .is_some_and(|base| base >= Duration::from_millis(20)),
            "{flows:?}"
        );
    });
}
