//! A server that stops reading: it accepts connections, reads each request's head, and then
//! reads nothing more (nor answers) until it is dropped — a store whose disk hung, or a
//! peer that went quiet with the TCP window closed. Dropping it closes every connection and
//! joins its threads.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

#[derive(Default)]
struct State {
    heads: u64,
    stopping: bool,
    streams: Vec<TcpStream>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

pub struct StuckServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl StuckServer {
    pub fn start() -> StuckServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let accept_shared = Arc::clone(&shared);
        let accept = std::thread::Builder::new()
            .name("test-stuck-accept".into())
            .spawn(move || {
                let mut threads = Vec::new();
                for stream in listener.incoming() {
                    let Ok(stream) = stream else { continue };
                    let shared = Arc::clone(&accept_shared);
                    {
                        let mut state = shared.state.lock();
                        if state.stopping {
                            break;
                        }
                        state.streams.push(stream.try_clone().unwrap());
                    }
                    threads.push(std::thread::spawn(move || hold(&shared, stream)));
                }
                for thread in threads {
                    let _ = thread.join();
                }
            })
            .unwrap();
        StuckServer {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits until `n` request heads have arrived.
    pub fn wait_heads(&self, n: u64, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let mut state = self.shared.state.lock();
        while state.heads < n {
            if self
                .shared
                .changed
                .wait_until(&mut state, deadline)
                .timed_out()
            {
                return state.heads >= n;
            }
        }
        true
    }
}

/// Reads one request head, then nothing, until the server stops.
fn hold(shared: &Shared, stream: TcpStream) {
    let mut reader = BufReader::new(&stream);
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) if line == "\r\n" => break,
            Ok(_) => {}
        }
    }
    let mut state = shared.state.lock();
    state.heads += 1;
    shared.changed.notify_all();
    while !state.stopping {
        shared.changed.wait(&mut state);
    }
}

impl Drop for StuckServer {
    fn drop(&mut self) {
        {
            let mut state = self.shared.state.lock();
            state.stopping = true;
            for stream in &state.streams {
                let _ = stream.shutdown(std::net::Shutdown::Both);
            }
            self.shared.changed.notify_all();
        }
        let _ = TcpStream::connect(self.addr);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}
