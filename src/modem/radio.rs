//! The modem's Wi-Fi as the links see it: up (connects go to the host's network) or down
//! (a `wifi off` fault: every connect fails as a chip's does without an access point).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::net::TcpStream;
use wsat_client::{Connecting, Connector};

/// Shared switch between the modem loop and its links' connectors.
#[derive(Debug, Clone)]
pub struct Radio {
    up: Arc<AtomicBool>,
}

impl Default for Radio {
    fn default() -> Self {
        Radio {
            up: Arc::new(AtomicBool::new(true)),
        }
    }
}

impl Radio {
    /// Turns Wi-Fi on or off for every link's next connect.
    pub fn set(&self, up: bool) {
        self.up.store(up, Ordering::Release);
    }

    /// Whether connects reach the network.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }
}

impl Connector for Radio {
    fn connect(&self, host: &str, port: u16) -> Connecting {
        if !self.is_up() {
            return Box::pin(std::future::ready(Err(std::io::Error::new(
                std::io::ErrorKind::NetworkUnreachable,
                "Wi-Fi is down",
            ))));
        }
        Box::pin(TcpStream::connect((host.to_owned(), port)))
    }
}
