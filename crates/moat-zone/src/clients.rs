//! The supervisor's API clients: one task per connection, and the routes between clients and
//! the containers' processes. A client that started or attached to a container, or started an
//! exec'd process, hears that process, and its stdin, signals and resizes go to it.

use std::collections::{BTreeMap, HashMap};

use moat_proto::frame::{decode, split_frames};
use moat_proto::{encode, FailureKind, FrameDecoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

use crate::api::{ApiRequest, ApiResponse};

/// Messages queued for one API client before the zone waits for it to read.
pub const CLIENT_QUEUE: usize = 64;

/// How long the zone waits for a client with a full queue before dropping it. Waiting is the
/// backpressure a slow reader (a pipe into a slow consumer) needs, but the zone's loop waits
/// with it, so a client that stopped reading must not hold the zone, and its stop, for ever.
const CLIENT_STALL: std::time::Duration = std::time::Duration::from_secs(10);

/// Where the main loop sends a client's answers and the streams it hears.
pub type Reply = mpsc::Sender<ApiResponse>;

/// A client connection's number, unique for the supervisor's life.
pub type ClientId = u64;

/// What a connection's task passes to the main loop.
pub enum ClientEvent {
    Request { client: ClientId, request: ApiRequest, reply: Reply },
    /// The client sends nothing more (it may still read what the zone has for it).
    Closed(ClientId),
}

#[derive(Default)]
pub struct Routes {
    last_process: u32,
    /// Who hears each process's output and exit.
    listeners: BTreeMap<u32, Vec<Reply>>,
    /// The process each client talks to.
    targets: HashMap<ClientId, u32>,
    /// Each container's own process.
    owners: BTreeMap<u32, String>,
    /// Clients that heard a process end, while their queues still hold what they heard: the
    /// zone's end waits for those too (see [`Routes::announce`]).
    heard_an_end: Vec<Reply>,
}

impl Routes {
    /// A number for a new process, never used before in this zone; `None` once all are.
    pub fn next_process(&mut self) -> Option<u32> {
        self.last_process = self.last_process.checked_add(1)?;
        Some(self.last_process)
    }

    /// `process` is `container`'s own.
    pub fn own(&mut self, process: u32, container: String) {
        self.owners.insert(process, container);
    }

    /// The container whose own process is `process`.
    pub fn container_of(&self, process: u32) -> Option<String> {
        self.owners.get(&process).cloned()
    }

    /// The container is gone: nothing of it is heard again. Returns its own process's number.
    pub fn forget_container(&mut self, container: &str) -> Option<u32> {
        let process = self.owners.iter().find(|(_, c)| *c == container).map(|(p, _)| *p)?;
        self.owners.remove(&process);
        self.listeners.remove(&process);
        Some(process)
    }

    /// `reply` hears `process` from now on.
    pub fn listen(&mut self, process: u32, reply: Reply) {
        self.listeners.entry(process).or_default().push(reply);
    }

    /// `client`'s stdin, signals and resizes go to `process` from now on.
    pub fn bind(&mut self, client: ClientId, process: u32) {
        self.targets.insert(client, process);
    }

    /// The process `client` talks to, once it started or attached to one.
    pub fn target(&self, client: ClientId) -> Option<u32> {
        self.targets.get(&client).copied()
    }

    pub fn forget(&mut self, client: ClientId) {
        self.targets.remove(&client);
    }

    /// Send to every client that hears `process`, dropping those that went away or stalled.
    pub async fn send(&mut self, process: u32, msg: ApiResponse) {
        self.send_within(process, msg, CLIENT_STALL).await;
    }

    async fn send_within(&mut self, process: u32, msg: ApiResponse, stall: std::time::Duration) {
        let Some(listeners) = self.listeners.get_mut(&process) else { return };
        let mut alive = Vec::with_capacity(listeners.len());
        for client in listeners.drain(..) {
            match tokio::time::timeout(stall, client.send(msg.clone())).await {
                Ok(Ok(())) => alive.push(client),
                Ok(Err(_)) => {}
                Err(_) => tracing::warn!(process, "dropping an API client that stopped reading"),
            }
        }
        *listeners = alive;
    }

    /// Send `msg` to every client that hears any process, and wait (up to `within`) until
    /// their queues are written out: the zone's end drops every connection right after.
    pub async fn announce(&mut self, msg: ApiResponse, within: std::time::Duration) {
        let processes: Vec<u32> = self.listeners.keys().copied().collect();
        for process in processes {
            self.send_within(process, msg.clone(), within).await;
        }
        let listeners: Vec<Reply> = self.listeners.values().flatten().chain(&self.heard_an_end).cloned().collect();
        let drained = async {
            while listeners.iter().any(has_queued) {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        };
        let _ = tokio::time::timeout(within, drained).await;
    }

    /// `process` ended: there is nothing more to hear from it. Its listeners are kept until they
    /// have read of its end, which the zone's end must not cut off.
    pub fn ended(&mut self, process: u32) {
        if let Some(listeners) = self.listeners.remove(&process) {
            self.heard_an_end.retain(has_queued);
            self.heard_an_end.extend(listeners);
        }
    }
}

/// Whether a client is still there with messages not yet taken by its writer.
fn has_queued(client: &Reply) -> bool {
    !client.is_closed() && client.capacity() < client.max_capacity()
}

/// Serve one client connection: requests go to the main loop, which answers (and streams what
/// the client hears) through the client's own queue.
pub async fn serve_client(stream: UnixStream, client: ClientId, events: mpsc::Sender<ClientEvent>) {
    let (mut read, mut write) = stream.into_split();
    let (reply_tx, mut reply_rx) = mpsc::channel::<ApiResponse>(CLIENT_QUEUE);
    let writer = tokio::spawn(async move {
        while let Some(msg) = reply_rx.recv().await {
            let Ok(bytes) = encode(&msg) else { return };
            if write.write_all(&bytes).await.is_err() {
                return;
            }
        }
    });
    let mut decoder = FrameDecoder::new();
    let mut buf = vec![0u8; 64 * 1024];
    'read: loop {
        let n = match read.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let Ok(frames) = split_frames(&mut decoder, &buf[..n]) else { break };
        for frame in frames {
            match decode::<ApiRequest>(&frame) {
                Ok(request) => {
                    if events.send(ClientEvent::Request { client, request, reply: reply_tx.clone() }).await.is_err() {
                        break 'read;
                    }
                }
                Err(e) => {
                    let _ = reply_tx.send(ApiResponse::Error { kind: FailureKind::BadRequest, message: format!("bad request: {e}") }).await;
                }
            }
        }
    }
    let _ = events.send(ClientEvent::Closed(client)).await;
    // The client stopped sending; keep delivering what the zone still has for it.
    drop(reply_tx);
    let _ = writer.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(future)
    }

    fn output(text: &str) -> ApiResponse {
        ApiResponse::Output { stream: moat_proto::Stream::Stdout, data: text.as_bytes().to_vec() }
    }

    /// A container's own process, in these tests.
    const WORKLOAD: u32 = 7;

    #[test]
    fn process_numbers_are_fresh() {
        let mut routes = Routes::default();
        assert_eq!(routes.next_process(), Some(1));
        assert_eq!(routes.next_process(), Some(2));
        routes.last_process = u32::MAX - 1;
        assert_eq!(routes.next_process(), Some(u32::MAX));
        assert_eq!(routes.next_process(), None, "numbers are not reused");
    }

    #[test]
    fn a_forgotten_container_is_heard_no_more() {
        let mut routes = Routes::default();
        let (client, mut rx) = mpsc::channel(8);
        routes.own(4, "c1".into());
        routes.listen(4, client);
        assert_eq!(routes.container_of(4).as_deref(), Some("c1"));
        routes.forget_container("c1");
        assert_eq!(routes.container_of(4), None);
        block_on(routes.send(4, output("late")));
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn each_process_is_heard_only_by_its_listeners() {
        let mut routes = Routes::default();
        let (attached, mut attached_rx) = mpsc::channel(8);
        let (exec_client, mut exec_rx) = mpsc::channel(8);
        routes.listen(WORKLOAD, attached);
        // The exec'd process has a number of its own, never the workload's.
        routes.listen(WORKLOAD + 1, exec_client);
        block_on(async {
            routes.send(WORKLOAD, output("main")).await;
            routes.send(WORKLOAD + 1, output("exec")).await;
            routes.send(WORKLOAD + 2, output("nobody")).await;
        });
        assert_eq!(attached_rx.try_recv().unwrap(), output("main"));
        assert!(attached_rx.try_recv().is_err());
        assert_eq!(exec_rx.try_recv().unwrap(), output("exec"));
        assert!(exec_rx.try_recv().is_err());

        routes.ended(WORKLOAD + 1);
        block_on(routes.send(WORKLOAD + 1, output("late")));
        assert!(exec_rx.try_recv().is_err(), "nothing after the end");
    }

    #[test]
    fn clients_that_went_away_are_dropped() {
        let mut routes = Routes::default();
        let (gone, gone_rx) = mpsc::channel(8);
        let (stays, mut stays_rx) = mpsc::channel(8);
        routes.listen(WORKLOAD, gone);
        routes.listen(WORKLOAD, stays);
        drop(gone_rx);
        block_on(routes.send(WORKLOAD, output("x")));
        assert_eq!(routes.listeners[&WORKLOAD].len(), 1);
        assert_eq!(stays_rx.try_recv().unwrap(), output("x"));
    }

    #[test]
    fn a_client_that_stops_reading_is_dropped_after_the_stall_bound() {
        let mut routes = Routes::default();
        let (stuck, _stuck_rx) = mpsc::channel(1);
        let (reading, mut reading_rx) = mpsc::channel(8);
        routes.listen(WORKLOAD, stuck);
        routes.listen(WORKLOAD, reading);
        let stall = std::time::Duration::from_millis(50);
        block_on(async {
            routes.send_within(WORKLOAD, output("1"), stall).await;
            routes.send_within(WORKLOAD, output("2"), stall).await;
        });
        assert_eq!(routes.listeners[&WORKLOAD].len(), 1, "the stuck client, its queue full, is gone");
        assert_eq!(reading_rx.try_recv().unwrap(), output("1"));
        assert_eq!(reading_rx.try_recv().unwrap(), output("2"), "the reading client got everything");
    }

    #[test]
    fn the_zones_end_waits_for_a_client_to_take_the_exit_it_heard() {
        let mut routes = Routes::default();
        let (client, mut rx) = mpsc::channel(8);
        routes.listen(WORKLOAD, client);
        let exited = ApiResponse::Exited { status: moat_proto::ExitStatus::Signal { signal: 9 } };
        let taken = block_on(async {
            routes.send(WORKLOAD, exited.clone()).await;
            routes.ended(WORKLOAD);
            // The client's writer takes the exit only after a while.
            let reader = tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                rx.recv().await
            });
            routes.announce(ApiResponse::ZoneEnded { reason: "stopped".into() }, std::time::Duration::from_secs(5)).await;
            assert!(reader.is_finished(), "the end waited for the exit to be taken");
            reader.await.unwrap()
        });
        assert_eq!(taken, Some(exited));
    }

    #[test]
    fn a_client_talks_to_its_exec_until_it_closes() {
        let mut routes = Routes::default();
        assert_eq!(routes.target(7), None, "by default, none");
        routes.bind(7, 3);
        assert_eq!(routes.target(7), Some(3));
        assert_eq!(routes.target(8), None, "other clients are not affected");
        routes.forget(7);
        assert_eq!(routes.target(7), None);
        assert!(routes.targets.is_empty());
    }
}
