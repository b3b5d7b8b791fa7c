//! The igvm crate's C API, re-exported so that cargo builds it into this
//! package's static library (`libigvm_harness_capi.a`, installed as
//! `libigvm.a`).  The functions are the crate's own `#[no_mangle] extern "C"`
//! items (igvm/src/c_api.rs, feature `igvm-c`); nothing is added here.

pub use igvm::c_api::*;
