//! A TCP proxy on 127.0.0.1 that misbehaves on the first connections through it: it cuts the
//! response stream (FIN or RST) after N bytes, flips one byte, or answers 503 itself. For
//! servers that cannot misbehave on their own (the S3 servers); later connections pass
//! through untouched. It counts connections and the bytes it passed back to the client.
//! Dropping it closes every connection and joins every thread.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;

use parking_lot::Mutex;

/// What the proxy does to a faulty connection's response stream (headers included).
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// Close the connection after this many bytes.
    pub cut_after: Option<u64>,
    /// With `cut_after`: reset (RST) instead of closing cleanly.
    pub reset: bool,
    /// Flip the bits of the byte at this offset.
    pub corrupt_at: Option<u64>,
    /// Flip the bits of every byte at offsets N-1, 2N-1, ...: keep-alive responses after the
    /// first are corrupted too.
    pub corrupt_every: Option<u64>,
    /// Answer the request with a 503 without asking the server.
    pub status_503: bool,
}

struct Shared {
    target: SocketAddr,
    faults: Faults,
    /// Connections that still get the faults.
    faulty_left: AtomicU64,
    stopping: AtomicBool,
    connections: AtomicU64,
    bytes_down: AtomicU64,
    /// Each open connection's two streams, so `Drop` can shut them down.
    streams: Mutex<HashMap<u64, (TcpStream, TcpStream)>>,
    next_id: AtomicU64,
}

pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Proxies to `target`; the first `faulty` connections get `faults`.
    pub fn start(target: SocketAddr, faults: Faults, faulty: u64) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            target,
            faults,
            faulty_left: AtomicU64::new(faulty),
            stopping: AtomicBool::new(false),
            connections: AtomicU64::new(0),
            bytes_down: AtomicU64::new(0),
            streams: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
        });
        let accept_shared = Arc::clone(&shared);
        let accept = std::thread::Builder::new()
            .name("test-proxy-accept".into())
            .spawn(move || accept_loop(&accept_shared, &listener))
            .unwrap();
        FaultProxy {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Bytes passed from the server to the client (headers included).
    pub fn bytes_down(&self) -> u64 {
        self.shared.bytes_down.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        for (client, server) in self.shared.streams.lock().values() {
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
        }
        let _ = TcpStream::connect(self.addr);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

fn accept_loop(shared: &Arc<Shared>, listener: &TcpListener) {
    let mut threads = Vec::new();
    for client in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        let Ok(client) = client else { continue };
        shared.connections.fetch_add(1, Ordering::SeqCst);
        let faulty = shared
            .faulty_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        let shared = Arc::clone(shared);
        threads.push(
            std::thread::Builder::new()
                .name("test-proxy-conn".into())
                .spawn(move || serve(&shared, client, faulty))
                .unwrap(),
        );
    }
    for thread in threads {
        let _ = thread.join();
    }
}

fn serve(shared: &Shared, client: TcpStream, faulty: bool) {
    let _ = client.set_nodelay(true);
    let faults = if faulty {
        shared.faults
    } else {
        Faults::default()
    };
    if faults.status_503 {
        // Read the request head, answer, close.
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && (&client).read(&mut byte).is_ok_and(|n| n == 1) {
            head.push(byte[0]);
        }
        let answer =
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
        let _ = (&client).write_all(answer);
        let _ = client.shutdown(Shutdown::Write);
        return;
    }
    let Ok(server) = TcpStream::connect(shared.target) else {
        return;
    };
    let _ = server.set_nodelay(true);
    let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
    shared.streams.lock().insert(
        id,
        (client.try_clone().unwrap(), server.try_clone().unwrap()),
    );
    let up = {
        let (client, server) = (client.try_clone().unwrap(), server.try_clone().unwrap());
        std::thread::Builder::new()
            .name("test-proxy-up".into())
            .spawn(move || {
                let _ = std::io::copy(&mut &client, &mut &server);
                let _ = server.shutdown(Shutdown::Write);
            })
            .unwrap()
    };
    // Down: server to client, with the faults.
    let mut passed = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let want = match faults.cut_after {
            Some(cut) if passed >= cut => break,
            Some(cut) => buf.len().min((cut - passed) as usize),
            None => buf.len(),
        };
        let n = match (&server).read(&mut buf[..want]) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(at) = faults.corrupt_at
            && at >= passed
            && at < passed + n as u64
        {
            buf[(at - passed) as usize] ^= 0xff;
        }
        if let Some(every) = faults.corrupt_every {
            let mut at = (passed / every + 1) * every - 1;
            while at < passed + n as u64 {
                buf[(at - passed) as usize] ^= 0xff;
                at += every;
            }
        }
        if (&client).write_all(&buf[..n]).is_err() {
            break;
        }
        passed += n as u64;
        shared.bytes_down.fetch_add(n as u64, Ordering::SeqCst);
    }
    let reset = faults.cut_after.is_some() && faults.reset;
    if reset {
        // Closing with a zero linger sends RST instead of FIN.
        let _ = socket2::SockRef::from(&client).set_linger(Some(std::time::Duration::ZERO));
    }
    // Wake the other direction without sending anything when resetting.
    let _ = client.shutdown(if reset {
        Shutdown::Read
    } else {
        Shutdown::Both
    });
    let _ = server.shutdown(Shutdown::Both);
    let _ = up.join();
    shared.streams.lock().remove(&id);
    drop(client);
}
