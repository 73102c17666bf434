//! The hook seam as the engine uses it: re-exported from `calloutd-hooks`, so that the callout
//! crate can implement [`Hooks`] without depending on the engine.

pub use calloutd_hooks::hooks::*;
