//! The line-oriented control interface (`--control stdio`): one JSON command per input line,
//! one JSON event per output line. Scripts, tests and operators drive a node with it the
//! same way they drive other Setowire peers.
//!
//! [`codec`] reads commands and writes events, [`route`] carries commands out through the
//! shards, [`stdio`] runs the loop between the two on stdin and stdout.

pub mod codec;
pub mod route;
pub mod stdio;

use crate::node::handle::RouteError;

pub use codec::{peer_id, Command};

/// Why a control command was refused or could not be carried out; the message of the
/// `error` event it gets.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("bad command: {0}")]
    BadCommand(serde_json::Error),
    #[error("hex field is not valid hex")]
    BadHex,
    #[error("peer must be at least 16 hex characters")]
    BadPeerId,
    #[error(transparent)]
    Route(#[from] RouteError),
}
