//! What the engine reports to the application.

use std::net::SocketAddr;

use crate::proto::identity::Id8;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A handshake completed: the peer has a session.
    Connected {
        peer: Id8,
        addr: SocketAddr,
    },
    Disconnected {
        peer: Id8,
        reason: DisconnectReason,
    },
    /// Application data from a peer, in order and de-duplicated.
    Data {
        peer: Id8,
        payload: Vec<u8>,
    },
    /// A value announced by a peer arrived and was stored (store-and-forward).
    Synced {
        key: String,
        value: Vec<u8>,
    },
    /// A fetch asked for by the application completed.
    Fetched {
        key: String,
        value: Vec<u8>,
    },
    /// A fetch got no answer in time.
    FetchFailed {
        key: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The peer said GOAWAY and fell silent.
    Goaway,
    /// Nothing heard from the peer within the peer timeout.
    Timeout,
    /// The application asked for it.
    Local,
    /// Another identity completed a handshake from the same address.
    Replaced,
    /// The peer table was full and a newcomer took the place (see `Engine`'s handshake).
    Displaced,
}

impl DisconnectReason {
    pub fn name(self) -> &'static str {
        match self {
            DisconnectReason::Goaway => "goaway",
            DisconnectReason::Timeout => "timeout",
            DisconnectReason::Local => "local",
            DisconnectReason::Replaced => "replaced",
            DisconnectReason::Displaced => "displaced",
        }
    }
}
