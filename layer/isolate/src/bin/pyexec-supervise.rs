//! The supervisor of one execution, and the waiter of a PID namespace's parent: see
//! `supervisor/mod.rs`. Shipped built with `panic = "abort"` (layer/isolate/supervise.flags):
//! then without the standard library or a C library, started by its own `_start`.

#![cfg_attr(all(panic = "abort", not(test)), no_std)]
#![cfg_attr(all(panic = "abort", not(test)), no_main)]

#[path = "../supervisor/mod.rs"]
mod supervisor;

#[cfg(not(all(panic = "abort", not(test))))]
fn main() {
    let arguments: Vec<Vec<u8>> = std::env::args_os()
        .skip(1)
        .map(std::ffi::OsString::into_encoded_bytes)
        .collect();
    let arguments: Vec<&[u8]> = arguments.iter().map(Vec::as_slice).collect();
    supervisor::main(&arguments)
}
