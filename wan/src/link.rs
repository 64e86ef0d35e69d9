//! The bottleneck: one link per direction, shared by every connection, serving them in the
//! order they ask (FIFO) at a fixed rate.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

pub(crate) struct Link {
    /// Seconds one byte occupies the link; 0 is unlimited.
    secs_per_byte: f64,
    /// When the link is next free.
    free_at: Mutex<Instant>,
}

impl Link {
    pub(crate) fn new(rate_bits_per_sec: Option<u64>) -> Link {
        Link {
            secs_per_byte: rate_bits_per_sec.map_or(0.0, |r| 8.0 / r.max(1) as f64),
            free_at: Mutex::new(Instant::now()),
        }
    }

    /// Puts `bytes` on the link no earlier than `earliest` and after everything put on it
    /// before; returns when their last bit has left.
    pub(crate) fn send(&self, earliest: Instant, bytes: usize) -> Instant {
        if self.secs_per_byte == 0.0 {
            return earliest;
        }
        let mut free_at = self.free_at.lock();
        let start = earliest.max(*free_at);
        let end = start + Duration::from_secs_f64(bytes as f64 * self.secs_per_byte);
        *free_at = end;
        end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_leave_in_order_at_the_rate() {
        let link = Link::new(Some(8_000_000)); // 1 MB/s
        let t0 = Instant::now();
        let a = link.send(t0, 1000);
        let b = link.send(t0, 1000); // queued behind a
        assert_eq!(a - t0, Duration::from_millis(1));
        assert_eq!(b - t0, Duration::from_millis(2));
        let later = t0 + Duration::from_secs(1);
        assert_eq!(link.send(later, 500) - later, Duration::from_micros(500));
        let free = Link::new(None);
        assert_eq!(free.send(t0, 1 << 30), t0);
    }
}
