//! Carries out control commands: each goes to the shard that can act on it, or to all.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::codec::{self, Command};
use super::ControlError;
use crate::node::handle::{NodeHandle, RouteError};
use crate::node::shard::ShardCommand;
use setowire_core::proto::identity::Id8;
use setowire_core::swarm::node_view::ShardId;

/// How long `peers` waits for the shards to list theirs.
const PEERS_ANSWER: Duration = Duration::from_secs(2);

/// Carries out `cmd`; what it answers is written through `emit`. `quit` is the caller's.
pub fn execute(
    node: &NodeHandle,
    cmd: Command,
    emit: &mut impl FnMut(Value),
) -> Result<(), ControlError> {
    match cmd {
        Command::Dial { addr } => node.to_shard(0, ShardCommand::Dial(addr))?,
        Command::Broadcast { hex } => {
            let payload: Arc<[u8]> = codec::bytes(&hex)?.into();
            node.to_all(|| ShardCommand::Broadcast(Arc::clone(&payload)))?;
        }
        Command::Send { peer, hex } => {
            let peer = codec::peer_id(&peer)?;
            let payload = codec::bytes(&hex)?;
            node.to_shard(owner(node, &peer)?, ShardCommand::Send { peer, payload })?;
        }
        Command::Store { key, hex } => {
            let value = codec::bytes(&hex)?;
            // Every shard announces it to its own mesh; the store itself is shared.
            node.to_all(|| ShardCommand::Store {
                key: key.clone(),
                value: value.clone(),
            })?;
        }
        Command::Fetch { key, timeout_ms } => node.to_shard(
            0,
            ShardCommand::Fetch {
                key,
                timeout: timeout_ms.map(Duration::from_millis),
            },
        )?,
        Command::Peers => emit(codec::render_peers(&node.peers(PEERS_ANSWER)?)),
        Command::Disconnect { peer } => {
            let peer = codec::peer_id(&peer)?;
            node.to_shard(owner(node, &peer)?, ShardCommand::Disconnect(peer))?;
        }
        Command::Quit => unreachable!("quit ends the control loop before it is routed"),
    }
    Ok(())
}

/// The shard holding `peer`'s session.
fn owner(node: &NodeHandle, peer: &Id8) -> Result<ShardId, RouteError> {
    node.locate(peer).ok_or(RouteError::NoSuchPeer)
}
