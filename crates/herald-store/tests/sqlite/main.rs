//! Integration tests of the SQLite store against real databases in temporary directories: one
//! test binary, one module per area.

mod channels;
mod common;
mod crud;
mod model;
mod webhooks;
