//! The supervisor of one execution, and the waiter of a PID namespace's parent: see
//! `pyexec_isolate::supervisor`.

fn main() {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(pyexec_isolate::supervisor::main(&arguments));
}
