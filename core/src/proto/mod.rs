//! The Setowire wire protocol: frame codec, identities, sessions and their helpers.

pub mod frame;
pub mod identity;
pub mod replay;
pub mod session;
