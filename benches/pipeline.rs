//! Benchmarks of haul's moving parts end to end: the dispatcher's throughput, the fetcher's
//! byte budget (alone and under 16 threads), many small objects through the `Downloader`,
//! ordered fetches from the in-process S3 server the tests use, and objects from the origin
//! into that server through an S3 target.
//!
//! Output directories go to `/dev/shm` when it exists, so the file system's metadata costs
//! (large on this VM's ext4) do not hide haul's own.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use haul::{CancelToken, Detail, Downloader, Existing, JobSpec};
use haul::{FetchKey, Fetcher, MemoryBudget};
use haul_origin::Origin;

// The in-process S3 server from the integration tests (s3s + s3s-fs on 127.0.0.1).
#[allow(dead_code, unreachable_pub)]
use haul_testkit as support;

fn scratch(label: &str) -> PathBuf {
    let shm = std::path::Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    base.join(format!("haul-bench-{label}-{}", std::process::id()))
}

fn run(d: &Downloader, spec: JobSpec) {
    let job = d.submit(spec).unwrap();
    assert!(d.wait(job, Duration::from_secs(600)).unwrap());
    let status = d.status(job, Detail::OnlyActive).unwrap();
    assert_eq!(status.failed, 0);
    d.remove(job).unwrap();
}

/// Tasks per second from submit through the dispatcher to a jogger, with a task that does
/// next to nothing: every object is already on disk and the job skips it (one `stat`).
fn dispatch(c: &mut Criterion) {
    const N: u64 = 20_000;
    let dir = scratch("dispatch");
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..N {
        std::fs::write(dir.join(format!("o-{i:05}")), b"").unwrap();
    }
    let d = Downloader::builder()
        .mountpath(&dir)
        .workers_per_target(2)
        .build()
        .unwrap();
    let mut group = c.benchmark_group("dispatcher");
    group.throughput(Throughput::Elements(N));
    group.sample_size(20);
    group.bench_function("skip_20k_existing", |b| {
        b.iter(|| {
            run(
                &d,
                JobSpec::range("http://127.0.0.1:9/o-{00000..19999}").existing(Existing::Skip),
            )
        })
    });
    // The ceiling the dispatcher works under: the same two channel hand-offs per task
    // (dispatcher → queue → worker → done → dispatcher) with two workers and a `stat` each,
    // and nothing else: no jobs, no templates, no placement.
    group.bench_function("baseline_channels_and_stat_20k", |b| {
        let probe = dir.join("o-00000");
        b.iter(|| {
            let (queue_tx, queue_rx) = crossbeam_channel::bounded::<u64>(1000);
            let (done_tx, done_rx) = crossbeam_channel::unbounded::<u64>();
            std::thread::scope(|s| {
                for _ in 0..2 {
                    let (rx, tx, probe) = (queue_rx.clone(), done_tx.clone(), &probe);
                    s.spawn(move || {
                        for task in rx {
                            std::hint::black_box(std::fs::metadata(probe).is_ok());
                            tx.send(task).unwrap();
                        }
                    });
                }
                let mut done = 0;
                for task in 0..N {
                    queue_tx.send(task).unwrap();
                    done += done_rx.try_iter().count() as u64;
                }
                drop(queue_tx);
                while done < N {
                    done_rx.recv().unwrap();
                    done += 1;
                }
            })
        })
    });
    group.finish();
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The fetcher's byte budget: acquire and release, uncontended and from 16 threads.
fn budget(c: &mut Criterion) {
    let mut group = c.benchmark_group("budget");
    let cancel = CancelToken::new();
    group.throughput(Throughput::Elements(1));
    group.bench_function("acquire_release_uncontended", |b| {
        let budget = MemoryBudget::new(1 << 30);
        b.iter(|| drop(budget.acquire(4096, &cancel).unwrap()))
    });
    const THREADS: usize = 16;
    const EACH: usize = 2_000;
    group.throughput(Throughput::Elements((THREADS * EACH) as u64));
    group.bench_function("acquire_release_16_threads", |b| {
        // Room for 8 permits at once: half the threads wait at any moment.
        let budget = MemoryBudget::new(8 * 4096);
        b.iter(|| {
            std::thread::scope(|s| {
                for _ in 0..THREADS {
                    s.spawn(|| {
                        let cancel = CancelToken::new();
                        for _ in 0..EACH {
                            drop(budget.acquire(4096, &cancel).unwrap());
                        }
                    });
                }
            })
        })
    });
    group.finish();
}

/// Many small objects from the loopback origin through the whole `Downloader`.
fn many_small(c: &mut Criterion) {
    let origin = Origin::builder().object_size(64 << 10).start().unwrap();
    let mut group = c.benchmark_group("downloader");
    group.throughput(Throughput::Elements(1000));
    group.sample_size(10);
    group.bench_function("1000_x_64KiB_8_workers", |b| {
        b.iter_batched(
            || {
                let dir = scratch(&format!("small-{}", rand_suffix()));
                let d = Downloader::builder()
                    .mountpath(&dir)
                    .workers_per_target(8)
                    .build()
                    .unwrap();
                (dir, d)
            },
            |(dir, d)| {
                run(&d, JobSpec::range(origin.url("/s/o-{000..999}.bin")));
                drop(d);
                let _ = std::fs::remove_dir_all(&dir);
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

/// A fresh suffix per iteration, so no run writes into a directory another just deleted.
fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Ordered fetches from the in-process S3 server: 500 x 64 KiB, and one 32 MiB object
/// streamed in 8 MiB parts.
fn ordered_fetch(c: &mut Criterion) {
    let server = support::s3::S3Server::start_local(&["bench"]);
    for i in 0..500 {
        server.seed_file("bench", &format!("s/{i:03}"), &vec![i as u8; 64 << 10]);
    }
    server.seed_file("bench", "big", &vec![7u8; 32 << 20]);
    let bucket = server.bucket("bench");
    let fetcher = Arc::new(
        Fetcher::builder()
            .workers(16)
            .per_request_workers(16)
            .memory_budget(256 << 20)
            .build()
            .unwrap(),
    );
    let mut group = c.benchmark_group("fetcher");
    group.sample_size(10);
    group.throughput(Throughput::Elements(500));
    group.bench_function("500_x_64KiB_in_order", |b| {
        b.iter(|| {
            let keys = (0..500).map(|i| FetchKey::new(format!("s/{i:03}")).size(64 << 10));
            for object in fetcher.fetch(&bucket, keys) {
                std::hint::black_box(object.unwrap());
            }
        })
    });
    group.throughput(Throughput::Bytes(32 << 20));
    group.bench_function("one_32MiB_streamed", |b| {
        b.iter(|| {
            let object = fetcher.fetch(&bucket, ["big"]).next().unwrap().unwrap();
            let mut reader = object.into_reader();
            std::io::copy(&mut reader, &mut std::io::sink()).unwrap()
        })
    });
    group.finish();
}

/// Objects from the loopback origin into the in-process S3 server through a `Downloader` with
/// an S3 target: 500 x 64 KiB (one PUT each), and one 64 MiB object (a multipart upload of
/// eight 8 MiB parts).
fn sink(c: &mut Criterion) {
    let server = support::s3::S3Server::start_local(&["sink"]);
    let bucket = server.bucket("sink");
    let origin = Origin::start().unwrap();
    let d = Downloader::builder()
        .s3_target(haul::S3Target::new(&bucket, "bench"))
        .workers_per_target(16)
        .build()
        .unwrap();
    let mut group = c.benchmark_group("sink");
    group.sample_size(10);
    group.throughput(Throughput::Elements(500));
    group.bench_function("500_x_64KiB_one_put_each", |b| {
        b.iter(|| {
            let n = rand_suffix();
            run(
                &d,
                JobSpec::range(origin.url(&format!("/k{n}/o-{{000..499}}.bin"))),
            );
        })
    });
    group.throughput(Throughput::Bytes(64 << 20));
    group.bench_function("one_64MiB_multipart", |b| {
        b.iter(|| {
            let n = rand_suffix();
            run(
                &d,
                JobSpec::single(origin.url(&format!("/big{n}.bin?size={}", 64 << 20))),
            );
        })
    });
    group.finish();
}

criterion_group!(benches, dispatch, budget, many_small, ordered_fetch, sink);
criterion_main!(benches);
