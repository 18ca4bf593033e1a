//! rapport-server
