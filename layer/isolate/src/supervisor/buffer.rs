//! A growable byte buffer in memory of its own (an anonymous mapping, grown with `mremap`):
//! the supervisor has no allocator, and what it reads (a session's state) may be megabytes.

use super::sys;

const PAGE: usize = 4096;

#[derive(Debug)]
pub struct Buffer {
    /// The mapping's address; 0 until the first byte needs room.
    address: usize,
    capacity: usize,
    len: usize,
}

impl Buffer {
    pub const fn new() -> Self {
        Self {
            address: 0,
            capacity: 0,
            len: 0,
        }
    }

    pub fn as_slice(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: the first `len` bytes of the mapping were written through `spare`.
        unsafe { core::slice::from_raw_parts(self.address as *const u8, self.len) }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Room for at least `wanted` more bytes, after what is there: empty when the memory
    /// cannot be had.
    pub fn spare(&mut self, wanted: usize) -> &mut [u8] {
        if self.capacity - self.len < wanted && !self.grow(self.len + wanted) {
            return &mut [];
        }
        let free = self.capacity - self.len;
        if free == 0 {
            return &mut [];
        }
        // SAFETY: the mapping is `capacity` bytes, readable and writable, and only this buffer
        // refers to it; the bytes past `len` hold nothing anyone reads.
        unsafe { core::slice::from_raw_parts_mut((self.address + self.len) as *mut u8, free) }
    }

    /// Counts `count` bytes written at the start of [`Self::spare`] as the buffer's.
    pub fn commit(&mut self, count: usize) {
        self.len = (self.len + count).min(self.capacity);
    }

    /// Appends `bytes`; false when the memory for them cannot be had.
    #[cfg(test)]
    pub fn extend_from_slice(&mut self, bytes: &[u8]) -> bool {
        let room = self.spare(bytes.len());
        if room.len() < bytes.len() {
            return false;
        }
        room[..bytes.len()].copy_from_slice(bytes);
        self.commit(bytes.len());
        true
    }

    fn grow(&mut self, at_least: usize) -> bool {
        let capacity = at_least.max(self.capacity * 2).next_multiple_of(PAGE);
        let address = if self.address == 0 {
            sys::map(capacity)
        } else {
            // SAFETY: the mapping is this buffer's alone; nothing borrows it while `&mut self`.
            unsafe { sys::remap(self.address, self.capacity, capacity) }
        };
        if address < 0 {
            return false;
        }
        self.address = address as usize;
        self.capacity = capacity;
        true
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        if self.address != 0 {
            // SAFETY: the mapping is this buffer's and is dropped with it.
            unsafe { sys::unmap(self.address, self.capacity) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_grows_across_pages_and_keeps_what_it_holds() {
        let mut buffer = Buffer::new();
        assert!(buffer.is_empty());
        let pattern: [u8; 1000] = core::array::from_fn(|i| i as u8);
        for _ in 0..100 {
            assert!(buffer.extend_from_slice(&pattern));
        }
        assert_eq!(buffer.len(), 100_000);
        assert!(buffer.as_slice().chunks(1000).all(|chunk| chunk == pattern));
        let room = buffer.spare(5);
        room[..2].copy_from_slice(b"ok");
        buffer.commit(2);
        assert!(buffer.as_slice().ends_with(b"ok"));
        buffer.clear();
        assert!(buffer.as_slice().is_empty());
    }
}
