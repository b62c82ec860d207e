//! A cursor codec for variable-length wire formats.
//!
//! [`Reader`] reads big-endian integers, length-prefixed byte strings and nested
//! length-prefixed parts ([`Reader::sub`]); every read checks the length first, so no
//! input makes it panic. [`Writer`] appends to a `Vec<u8>`.

use super::Error;

/// A read cursor over a byte slice.
#[derive(Clone, Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A cursor at the start of `buf`.
    pub const fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// Bytes not yet read.
    pub const fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Fails unless every byte has been read.
    pub fn finish(&self) -> Result<(), Error> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(Error::Trailing)
        }
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if self.buf.len() < n {
            return Err(Error::Truncated);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// All the bytes not yet read.
    pub fn rest(&mut self) -> &'a [u8] {
        core::mem::take(&mut self.buf)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// A byte.
    pub fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.array::<1>()?[0])
    }
    /// A big-endian u16.
    pub fn u16(&mut self) -> Result<u16, Error> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    /// A big-endian u32.
    pub fn u32(&mut self) -> Result<u32, Error> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    /// A big-endian u64.
    pub fn u64(&mut self) -> Result<u64, Error> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    /// A boolean encoded as 0 or 1.
    pub fn bool(&mut self) -> Result<bool, Error> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(Error::Malformed),
        }
    }

    /// Bytes prefixed by a u16 length.
    pub fn bytes16(&mut self) -> Result<&'a [u8], Error> {
        let n = usize::from(self.u16()?);
        self.take(n)
    }

    /// A UTF-8 string prefixed by a u8 length.
    pub fn str8(&mut self) -> Result<&'a str, Error> {
        let n = usize::from(self.u8()?);
        core::str::from_utf8(self.take(n)?).map_err(|_| Error::Malformed)
    }

    /// A nested reader over the next part, prefixed by a u16 length.
    pub fn sub(&mut self) -> Result<Reader<'a>, Error> {
        Ok(Reader::new(self.bytes16()?))
    }

    /// A u16 element count, checked against the bytes left (each element takes at
    /// least `min_elem` bytes), so a hostile count cannot make a decoder allocate much.
    pub fn count(&mut self, min_elem: usize) -> Result<usize, Error> {
        let n = usize::from(self.u16()?);
        if n.saturating_mul(min_elem.max(1)) > self.remaining() {
            return Err(Error::Truncated);
        }
        Ok(n)
    }
}

/// An append-only writer.
#[derive(Clone, Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }
    /// The bytes written.
    pub fn into_inner(self) -> Vec<u8> {
        self.buf
    }
    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }
    /// True if nothing was written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    /// Appends a byte.
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    /// Appends a big-endian u16.
    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    /// Appends a big-endian u32.
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    /// Appends a big-endian u64.
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    /// Appends a boolean as 0 or 1.
    pub fn bool(&mut self, v: bool) {
        self.u8(u8::from(v));
    }
    /// Appends raw bytes.
    pub fn raw(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }
    /// Appends bytes with a u16 length prefix (truncated to 65535 bytes).
    pub fn bytes16(&mut self, v: &[u8]) {
        let n = v.len().min(usize::from(u16::MAX));
        self.u16(n as u16);
        self.raw(&v[..n]);
    }
    /// Appends a string with a u8 length prefix (cut at 255 bytes on a char boundary).
    pub fn str8(&mut self, v: &str) {
        let mut n = v.len().min(255);
        while !v.is_char_boundary(n) {
            n -= 1;
        }
        self.u8(n as u8);
        self.raw(&v.as_bytes()[..n]);
    }
    /// Appends a nested part written by `f`, prefixed by its u16 length.
    pub fn sub(&mut self, f: impl FnOnce(&mut Self)) {
        let at = self.buf.len();
        self.u16(0);
        f(self);
        let n = (self.buf.len() - at - 2).min(usize::from(u16::MAX)) as u16;
        self.buf[at..at + 2].copy_from_slice(&n.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let mut w = Writer::new();
        w.u8(1);
        w.u16(0x0203);
        w.u32(0x0405_0607);
        w.u64(0x0809_0a0b_0c0d_0e0f);
        w.str8("héllo");
        w.sub(|w| w.bytes16(b"xy"));
        let bytes = w.into_inner();
        assert_eq!(
            &bytes[..15],
            &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]
        );
        let mut r = Reader::new(&bytes);
        assert_eq!(r.u8().unwrap(), 1);
        assert_eq!(r.u16().unwrap(), 0x0203);
        assert_eq!(r.u32().unwrap(), 0x0405_0607);
        assert_eq!(r.u64().unwrap(), 0x0809_0a0b_0c0d_0e0f);
        assert_eq!(r.str8().unwrap(), "héllo");
        let mut s = r.sub().unwrap();
        assert_eq!(s.bytes16().unwrap(), b"xy");
        s.finish().unwrap();
        r.finish().unwrap();
        for cut in 0..bytes.len() {
            let mut r = Reader::new(&bytes[..cut]);
            let res = (|| {
                r.u8()?;
                r.u16()?;
                r.u32()?;
                r.u64()?;
                r.str8()?;
                r.sub()?.bytes16()?;
                Ok::<_, Error>(())
            })();
            assert!(res.is_err(), "cut at {cut} must fail");
        }
    }

    #[test]
    fn hostile_count_is_rejected() {
        let mut r = Reader::new(&[0xff, 0xff, 0, 0]);
        assert_eq!(r.count(8), Err(Error::Truncated));
    }
}
