//! Who is on the other end of an API connection, recorded by each listener
//! when it accepts the connection (axum's connect info).

use std::net::SocketAddr;

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use tokio::net::{TcpListener, UnixListener};

use crate::audit::AuditClient;
use crate::token::TokenFingerprint;

#[derive(Clone, Copy, Debug)]
pub enum Peer {
    /// The Unix socket: the connecting process's credentials (SO_PEERCRED),
    /// when the kernel gives them.
    Unix { uid: Option<u32>, pid: Option<i32> },
    /// TCP: the client's address, and the local address it reached (a
    /// migration's destination QEMU listens on the address the source used).
    Tcp { remote: SocketAddr, local: Option<SocketAddr> },
}

impl Peer {
    /// The local address of a TCP connection; `None` on the Unix socket.
    pub fn served_on(&self) -> Option<SocketAddr> {
        match self {
            Peer::Tcp { local, .. } => *local,
            Peer::Unix { .. } => None,
        }
    }

    /// The client as the audit log names it; `token` is the fingerprint of
    /// the bearer token a TCP client was admitted with.
    pub fn audit_client(&self, token: Option<&TokenFingerprint>) -> AuditClient {
        match *self {
            Peer::Unix { uid, pid } => AuditClient::Unix { uid, pid },
            Peer::Tcp { remote, .. } => AuditClient::Tcp { addr: remote, token: token.map(|t| t.as_str().to_string()) },
        }
    }
}

impl Connected<IncomingStream<'_, TcpListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Self {
        Peer::Tcp { remote: *stream.remote_addr(), local: stream.io().local_addr().ok() }
    }
}

impl Connected<IncomingStream<'_, UnixListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, UnixListener>) -> Self {
        let credentials = stream.io().peer_cred().ok();
        Peer::Unix { uid: credentials.map(|c| c.uid()), pid: credentials.and_then(|c| c.pid()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tcp_peers_have_a_local_address_and_a_token() {
        let local: SocketAddr = "10.0.0.6:7070".parse().unwrap();
        let remote: SocketAddr = "10.0.0.5:40000".parse().unwrap();
        let tcp = Peer::Tcp { remote, local: Some(local) };
        assert_eq!(tcp.served_on(), Some(local));
        let unix = Peer::Unix { uid: Some(1000), pid: Some(7) };
        assert_eq!(unix.served_on(), None);
        let fingerprint = crate::token::ApiToken::for_tests("secret").fingerprint();
        assert_eq!(
            tcp.audit_client(Some(&fingerprint)),
            AuditClient::Tcp { addr: remote, token: Some("2bb80d53".to_string()) }
        );
        assert_eq!(unix.audit_client(Some(&fingerprint)), AuditClient::Unix { uid: Some(1000), pid: Some(7) });
    }
}
