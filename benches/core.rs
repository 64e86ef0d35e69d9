//! Micro-benchmarks of haul's CPU-side building blocks: template expansion, HRW placement,
//! `ProgressReader` overhead, and one loopback end-to-end download from the project's origin.

use std::hint::black_box;
use std::io::Read;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use haul::{
    CancelToken, Downloader, HttpClient, Mountpath, ObjectName, ObjectTask, Progress,
    ProgressReader, Template,
};
use haul_origin::Origin;

fn template_expansion(c: &mut Criterion) {
    let t = Template::parse("https://host/data/shard-{000000..999999}.tar").unwrap();
    let mut group = c.benchmark_group("template");
    group.throughput(Throughput::Elements(100_000));
    group.bench_function("expand_100k_names", |b| {
        b.iter(|| {
            for name in t.iter().take(100_000) {
                black_box(name);
            }
        })
    });
    group.finish();
}

/// HRW placement as the dispatcher does it, through `Downloader::placement`: the name's
/// hash and the highest weight over the targets.
fn hrw_placement(c: &mut Criterion) {
    let names: Vec<ObjectName> = (0..10_000u32)
        .map(|i| ObjectName::new(format!("shard-{i:06}.tar")).unwrap())
        .collect();
    let dir = std::env::temp_dir().join(format!("haul-bench-hrw-{}", std::process::id()));
    let mut group = c.benchmark_group("hrw");
    group.throughput(Throughput::Elements(names.len() as u64));
    for targets in [1usize, 4, 16] {
        let downloader = (0..targets)
            .fold(Downloader::builder(), |b, i| {
                b.mountpath(dir.join(format!("disk{i}")))
            })
            .build()
            .unwrap();
        group.bench_function(format!("place_10k_over_{targets}"), |b| {
            b.iter(|| {
                for name in &names {
                    black_box(downloader.placement(name));
                }
            })
        });
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

fn progress_reader(c: &mut Criterion) {
    let data = vec![7u8; 64 << 20];
    let mut buf = vec![0u8; 256 * 1024];
    let mut group = c.benchmark_group("progress_reader");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.bench_function("bare_64MiB", |b| {
        b.iter(|| {
            let mut r = &data[..];
            while r.read(&mut buf).unwrap() > 0 {}
        })
    });
    group.bench_function("counted_64MiB", |b| {
        let (progress, cancel) = (Progress::new(), CancelToken::new());
        b.iter(|| {
            let mut r = ProgressReader::new(&data[..], &progress, &cancel);
            while r.read(&mut buf).unwrap() > 0 {}
        })
    });
    group.finish();
}

fn loopback_download(c: &mut Criterion) {
    let origin = Origin::start().unwrap();
    let dir = std::env::temp_dir().join(format!("haul-bench-{}", std::process::id()));
    let mountpath = Mountpath::new(&dir).unwrap();
    let client = HttpClient::default();
    let mut group = c.benchmark_group("download");
    for (label, size) in [("64KiB", 64u64 << 10), ("16MiB", 16 << 20)] {
        let task =
            ObjectTask::from_url(origin.url(&format!("/b/{label}.bin?size={size}"))).unwrap();
        group.throughput(Throughput::Bytes(size));
        group.bench_function(format!("one_object_{label}"), |b| {
            b.iter(|| {
                haul::download(
                    &client,
                    &task,
                    &mountpath,
                    &Progress::new(),
                    &CancelToken::new(),
                )
                .unwrap()
            })
        });
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(
    benches,
    template_expansion,
    hrw_placement,
    progress_reader,
    loopback_download
);
criterion_main!(benches);
