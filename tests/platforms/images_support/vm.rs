//! The cgroup v2 check: tools/images/run-vm.sh boots Debian 12's kernel under qemu on a disk
//! holding an image's filesystem; init.sh and check.py inside print `VMCHECK <name> <json>`
//! lines on the serial console, collected here.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Instant;

use serde_json::Value;

use super::{repo_root, tail, Image};

/// The findings of one boot, by name, and the whole serial log for failure messages.
#[derive(Debug)]
pub struct VmRun {
    pub findings: BTreeMap<String, Value>,
    pub serial: String,
}

impl VmRun {
    pub fn boot(image: &Image) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let serial_path = dir.path().join("serial.log");
        let started = Instant::now();
        let output = Command::new(repo_root().join("tools/images/run-vm.sh"))
            .arg(&image.dir)
            .arg(&serial_path)
            .output()
            .expect("tools/images/run-vm.sh starts");
        let serial = std::fs::read_to_string(&serial_path).unwrap_or_default();
        assert!(
            output.status.success(),
            "the VM failed ({}):\n{}\n--- serial console ---\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr),
            tail(&serial, 80)
        );
        println!("VM boot and check: {:?}", started.elapsed());
        Self {
            findings: parse(&serial),
            serial,
        }
    }

    /// One finding; fails with the console when the VM never reported it.
    pub fn get(&self, name: &str) -> &Value {
        self.findings
            .get(name)
            .unwrap_or_else(|| panic!("the VM reported no {name}:\n{}", tail(&self.serial, 80)))
    }
}

fn parse(serial: &str) -> BTreeMap<String, Value> {
    serial
        .lines()
        .filter_map(|line| line.trim_end_matches('\r').split_once("VMCHECK "))
        .filter_map(|(_, rest)| rest.split_once(' '))
        .map(|(name, json)| {
            let value = serde_json::from_str(json).unwrap_or(Value::String(json.to_owned()));
            (name.to_owned(), value)
        })
        .collect()
}
