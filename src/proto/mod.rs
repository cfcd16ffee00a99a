//! The Setowire wire protocol: frame codec, identities, sessions and their helpers.
