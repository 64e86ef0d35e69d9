//! Fetch every object under an S3 prefix, in listing order, within a 256 MiB budget, and
//! print each key with its size and a checksum.
//!
//! ```sh
//! AWS_ENDPOINT_URL=http://127.0.0.1:8333 AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... \
//!     cargo run --release --example ordered_fetch -- my-bucket shards/
//! ```

use std::io::Read;

use haul::{Bucket, S3Config};
use haul::{FetchKey, Fetcher};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(bucket), prefix) = (args.next(), args.next().unwrap_or_default()) else {
        eprintln!("usage: ordered_fetch BUCKET [PREFIX]");
        std::process::exit(2);
    };
    let bucket = Bucket::new(&bucket, &S3Config::from_env())?;
    let fetcher = Fetcher::builder()
        .workers(16)
        .per_request_workers(8)
        .memory_budget(256 << 20)
        .build()?;
    // The listing is lazy: keys flow into the fetch one page at a time.
    let keys = bucket.list(&prefix).filter_map(|o| match o {
        Ok(object) => Some(FetchKey::from(object)),
        Err(e) => {
            eprintln!("listing failed: {e}");
            None
        }
    });
    for object in fetcher.fetch(&bucket, keys) {
        let object = object?; // every error names its key
        let (key, size) = (object.key().to_owned(), object.size());
        // Small objects arrive whole; large ones stream in parts. Either way the budget comes
        // back when `object` (or its reader) is dropped at the end of this iteration.
        let mut sum = 0u64;
        let mut reader = object.into_reader();
        let mut buf = vec![0; 1 << 16];
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                break;
            }
            sum = buf[..n]
                .iter()
                .fold(sum, |s, &b| s.wrapping_mul(31).wrapping_add(u64::from(b)));
        }
        println!("{key}\t{size}\t{sum:016x}");
    }
    Ok(())
}
