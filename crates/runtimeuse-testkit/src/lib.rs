//! Test support shared by the workspace's integration tests. Everything here is real:
//! real HTTP servers and TCP proxies bound to 127.0.0.1 on port 0.

pub mod blob_server;
pub mod cut_proxy;

pub use blob_server::{BlobServer, Upload};
pub use cut_proxy::{CutPlan, CutProxy, Direction, ProxyStats};
