//! rapport-engine
