//! `haul-hub`: the origin's emulated Hugging Face Hub as a process, for `benches/peers.sh`
//! (an example, `cargo run -p haul-origin --example haul-hub`).
//!
//! ```text
//! haul-hub storage                       # the storage host LFS files redirect to
//! haul-hub hub --storage URL [--files N] [--file-size BYTES] [--sha256 FILE]
//! ```
//!
//! Each prints `LISTENING 127.0.0.1:PORT` and serves until killed. The hub serves one dataset,
//! `bench/shards`: a README.md, a config.json and N LFS files `data/shard-NNNN.bin` (default
//! 16 of 64 MiB); `--sha256 FILE` writes their digests as `sha256sum` lines, paths relative to
//! the repo (a download's directory), for the bench to check against.

use std::io::Write;

use haul_origin::{Hub, HubRepo, Origin};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let origin = match args.first().map(String::as_str) {
        Some("storage") => Origin::start(),
        Some("hub") => {
            let Some(storage) = value("--storage") else {
                usage();
            };
            let files: u64 = value("--files").map_or(16, |v| v.parse().unwrap_or_else(|_| usage()));
            let size: u64 =
                value("--file-size").map_or(64 << 20, |v| v.parse().unwrap_or_else(|_| usage()));
            let mut repo = HubRepo::dataset("bench/shards")
                .file("README.md", 2_000)
                .file("config.json", 300);
            let names: Vec<String> = (0..files)
                .map(|i| format!("data/shard-{i:04}.bin"))
                .collect();
            for name in &names {
                repo = repo.lfs_file(name, size);
            }
            if let Some(path) = value("--sha256") {
                let mut out = std::fs::File::create(&path).expect("the --sha256 file");
                for name in ["README.md", "config.json"]
                    .into_iter()
                    .chain(names.iter().map(String::as_str))
                {
                    writeln!(out, "{}  {name}", repo.sha256(name)).expect("write --sha256");
                }
            }
            Origin::builder().hub(Hub::new(storage).repo(repo)).start()
        }
        _ => usage(),
    }
    .expect("start the origin");
    println!("LISTENING {}", origin.addr());
    std::io::stdout().flush().expect("stdout");
    loop {
        std::thread::park();
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: haul-hub storage | haul-hub hub --storage URL [--files N] [--file-size BYTES] [--sha256 FILE]"
    );
    std::process::exit(2)
}
