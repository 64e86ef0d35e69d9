//! One object through `haul::download` with your own progress display: a `Progress` read
//! from another thread while the transfer runs, and a `CancelToken` to stop it.
//!
//! ```sh
//! cargo run --example custom_progress
//! ```

use std::sync::Arc;
use std::time::Duration;

use haul::{CancelToken, HttpClient, Mountpath, ObjectTask, Progress};
use haul_origin::Origin;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // 8 MiB served at 16 MiB/s: half a second, long enough to watch.
    let origin = Origin::start()?;
    let url = origin.url("/big.bin?size=8388608&rate=16777216");
    let dir = std::env::temp_dir().join(format!("haul-example-progress-{}", std::process::id()));
    let mountpath = Mountpath::new(&dir)?;
    let progress = Arc::new(Progress::new());
    let cancel = CancelToken::new();

    let watcher = {
        let (progress, cancel) = (Arc::clone(&progress), cancel.clone());
        std::thread::spawn(move || {
            // Redraw every 100 ms until the transfer ends (the main thread cancels then).
            while cancel.sleep(Duration::from_millis(100)) {
                let total = progress.total().unwrap_or(0).max(1);
                let pct = progress.done() * 100 / total;
                println!("{:>3}% {:>9} of {} bytes", pct, progress.done(), total);
            }
        })
    };
    let task = ObjectTask::from_url(url)?;
    let landed = haul::download(
        &HttpClient::default(),
        &task,
        &mountpath,
        &progress,
        &CancelToken::new(),
    )?;
    cancel.cancel(); // stops the watcher
    watcher.join().expect("watcher");
    println!("landed {} ({} bytes)", landed.path.display(), landed.bytes);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
