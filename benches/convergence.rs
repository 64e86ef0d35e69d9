//! How fast the adaptive concurrency fills a link: the time from submit until the host's
//! delivery rate first reaches 90% of the link's, across the in-process WAN emulator
//! (`haul-wan`: 20 ms RTT, 1 Gbit/s, no think time) in front of the loopback origin, for a
//! job of 64 KiB objects; and, beside it, a pool pinned at 64 (a right guess for this link:
//! every transfer starts at once, so only the connections' slow start stands between it
//! and the link).
//!
//! The rate is the bytes of finished transfers (`Downloader::flows`) over a sliding 100 ms
//! window, sampled every 5 ms. Each iteration is a fresh downloader, origin and emulator,
//! into never-used directories under `/dev/shm` when it exists.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use haul::{Concurrency, Detail, Downloader, JobSpec};
use haul_origin::Origin;
use haul_wan::{ThinkTime, Wan, WanConfig};

const LINK_MBIT: u64 = 1000;
const OBJECTS: usize = 3000;
const WINDOW: Duration = Duration::from_millis(100);
const SAMPLE: Duration = Duration::from_millis(5);

fn scratch(run: usize) -> PathBuf {
    let shm = std::path::Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    base.join(format!("haul-bench-conv-{}-{run}", std::process::id()))
}

/// One job across a fresh WAN; returns when the rate first reached 90% of the link (or the
/// job's end, when it never did) and whether it did.
fn converge(concurrency: Concurrency, run: usize) -> (Duration, bool) {
    let origin = Origin::start().unwrap();
    let config = WanConfig::default()
        .rtt(Duration::from_millis(20))
        .rate_mbit(LINK_MBIT)
        .think(ThinkTime::none());
    let wan = Wan::start(origin.addr(), config).unwrap();
    let dir = scratch(run);
    let d = Downloader::builder()
        .mountpath(&dir)
        .concurrency(concurrency)
        .build()
        .unwrap();
    let template = format!(
        "http://{}/c/o-{{0000..{:04}}}.bin?size=65536",
        wan.addr(),
        OBJECTS - 1
    );
    let link_bytes_per_sec = LINK_MBIT as f64 * 1e6 / 8.0;
    let started = Instant::now();
    let job = d.submit(JobSpec::range(template)).unwrap();
    let mut samples: std::collections::VecDeque<(Instant, u64)> = Default::default();
    let reached = loop {
        let now = Instant::now();
        let bytes = d.flows().first().map_or(0, |f| f.bytes);
        samples.push_back((now, bytes));
        while samples
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > WINDOW)
        {
            samples.pop_front();
        }
        let (first_at, first_bytes) = samples[0];
        let span = now.duration_since(first_at).as_secs_f64();
        if span >= WINDOW.as_secs_f64() * 0.9
            && (bytes - first_bytes) as f64 / span >= 0.9 * link_bytes_per_sec
        {
            break Some(now - started);
        }
        if d.wait(job, SAMPLE).unwrap() {
            break None;
        }
    };
    let took = started.elapsed();
    let done = d.wait(job, Duration::from_secs(600)).unwrap();
    assert!(done, "the job finished");
    assert_eq!(d.status(job, Detail::OnlyActive).unwrap().failed, 0);
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
    match reached {
        Some(at) => (at, true),
        None => (took, false),
    }
}

fn convergence(c: &mut Criterion) {
    let mut group = c.benchmark_group("convergence");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(30));
    for (label, concurrency) in [
        (
            "adaptive, to 90% of 1 Gbit/s at 20 ms",
            Concurrency::adaptive(),
        ),
        (
            "fixed 64, to 90% of 1 Gbit/s at 20 ms",
            Concurrency::fixed(64),
        ),
    ] {
        let mut run = 0;
        group.bench_function(label, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    run += 1;
                    let (took, reached) = converge(concurrency, run);
                    assert!(reached, "{label}: the job ended first");
                    total += took;
                }
                total
            });
        });
    }
    group.finish();
}

criterion_group!(benches, convergence);
criterion_main!(benches);
