//! A plain little-endian encoding with length-prefixed byte strings: the spec crosses from the
//! service to a template's child, both built from this crate, so nothing richer is needed.

use std::ffi::CString;

/// A spec that does not decode: the service and the library disagree, never a script's doing.
#[derive(Debug, PartialEq, Eq)]
pub struct Malformed;

#[derive(Default)]
pub(crate) struct Writer(Vec<u8>);

impl Writer {
    pub fn u32(&mut self, value: u32) {
        self.0.extend_from_slice(&value.to_le_bytes());
    }
    pub fn u64(&mut self, value: u64) {
        self.0.extend_from_slice(&value.to_le_bytes());
    }
    pub fn flag(&mut self, value: bool) {
        self.0.push(u8::from(value));
    }
    pub fn bytes(&mut self, value: &[u8]) {
        self.u32(value.len() as u32);
        self.0.extend_from_slice(value);
    }
    pub fn program(&mut self, program: &[libc::sock_filter]) {
        self.u32(program.len() as u32);
        for instruction in program {
            self.0.extend_from_slice(&instruction.code.to_le_bytes());
            self.0.push(instruction.jt);
            self.0.push(instruction.jf);
            self.u32(instruction.k);
        }
    }
    pub fn finish(self) -> Vec<u8> {
        self.0
    }
}

pub(crate) struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self(bytes)
    }
    fn take(&mut self, count: usize) -> Result<&'a [u8], Malformed> {
        if self.0.len() < count {
            return Err(Malformed);
        }
        let (taken, rest) = self.0.split_at(count);
        self.0 = rest;
        Ok(taken)
    }
    pub fn u32(&mut self) -> Result<u32, Malformed> {
        let bytes = self.take(4)?;
        Ok(u32::from_le_bytes(bytes.try_into().map_err(|_| Malformed)?))
    }
    pub fn u64(&mut self) -> Result<u64, Malformed> {
        let bytes = self.take(8)?;
        Ok(u64::from_le_bytes(bytes.try_into().map_err(|_| Malformed)?))
    }
    pub fn flag(&mut self) -> Result<bool, Malformed> {
        match self.take(1)? {
            [0] => Ok(false),
            [1] => Ok(true),
            _ => Err(Malformed),
        }
    }
    pub fn c_string(&mut self) -> Result<CString, Malformed> {
        let length = self.u32()? as usize;
        CString::new(self.take(length)?).map_err(|_| Malformed)
    }
    pub fn program(&mut self) -> Result<Vec<libc::sock_filter>, Malformed> {
        let length = self.u32()? as usize;
        let mut program = Vec::with_capacity(length.min(4096));
        for _ in 0..length {
            let code = u16::from_le_bytes(self.take(2)?.try_into().map_err(|_| Malformed)?);
            let jumps = self.take(2)?;
            let k = self.u32()?;
            program.push(libc::sock_filter {
                code,
                jt: jumps[0],
                jf: jumps[1],
                k,
            });
        }
        Ok(program)
    }
    pub fn end(&self) -> Result<(), Malformed> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Malformed)
        }
    }
}
