//! A bounds-checked reader over an event body.
//!
//! Every read names what it reads, so that a truncated or corrupt event reports which
//! field ran out ("column types: needs 12 bytes, 3 left") instead of panicking.

use super::BinlogError;

#[derive(Debug, Clone)]
pub struct Cursor<'a> {
    buf: &'a [u8],
}

impl<'a> Cursor<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Cursor { buf }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Everything not read yet.
    pub fn rest(&self) -> &'a [u8] {
        self.buf
    }

    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], BinlogError> {
        if n > self.buf.len() {
            return Err(BinlogError::Truncated {
                what,
                needed: n,
                available: self.buf.len(),
            });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub fn skip(&mut self, n: usize, what: &'static str) -> Result<(), BinlogError> {
        self.take(n, what).map(|_| ())
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, BinlogError> {
        match self.buf.split_first() {
            Some((&b, tail)) => {
                self.buf = tail;
                Ok(b)
            }
            None => Err(BinlogError::Truncated {
                what,
                needed: 1,
                available: 0,
            }),
        }
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], BinlogError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    pub fn u16(&mut self, what: &'static str) -> Result<u16, BinlogError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    pub fn u32(&mut self, what: &'static str) -> Result<u32, BinlogError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    pub fn u64(&mut self, what: &'static str) -> Result<u64, BinlogError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// Little-endian unsigned integer of `n` ≤ 8 bytes.
    pub fn uint_le(&mut self, n: usize, what: &'static str) -> Result<u64, BinlogError> {
        Ok(le(self.take(n.min(8), what)?))
    }

    /// Big-endian unsigned integer of `n` ≤ 8 bytes.
    pub fn uint_be(&mut self, n: usize, what: &'static str) -> Result<u64, BinlogError> {
        Ok(be(self.take(n.min(8), what)?))
    }

    /// A length-encoded integer (protocol `int<lenenc>`).
    pub fn lenenc(&mut self, what: &'static str) -> Result<u64, BinlogError> {
        match self.u8(what)? {
            b @ 0..=0xfa => Ok(u64::from(b)),
            0xfc => self.uint_le(2, what),
            0xfd => self.uint_le(3, what),
            0xfe => self.uint_le(8, what),
            b => Err(BinlogError::invalid(
                what,
                format!("0x{b:02x} does not start a length"),
            )),
        }
    }

    /// A length-encoded integer used as a count or length of what follows; it cannot be
    /// larger than the bytes left, which keeps allocations bounded by the event size.
    pub fn lenenc_len(&mut self, what: &'static str) -> Result<usize, BinlogError> {
        let n = self.lenenc(what)?;
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= self.buf.len())
            .ok_or(BinlogError::Truncated {
                what,
                needed: usize::try_from(n).unwrap_or(usize::MAX),
                available: self.buf.len(),
            })
    }

    /// A length-encoded byte string.
    pub fn lenenc_bytes(&mut self, what: &'static str) -> Result<&'a [u8], BinlogError> {
        let n = self.lenenc_len(what)?;
        self.take(n, what)
    }
}

/// Little-endian value of up to 8 bytes.
pub fn le(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .rev()
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
}

/// Big-endian value of up to 8 bytes.
pub fn be(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn lengths_beyond_the_event_are_refused() {
        let mut c = Cursor::new(&[0xfc, 0xff, 0xff, 1, 2]);
        assert!(matches!(
            c.lenenc_len("x"),
            Err(BinlogError::Truncated { .. })
        ));
        let mut c = Cursor::new(&[0xfb]);
        assert!(matches!(c.lenenc("x"), Err(BinlogError::Invalid { .. })));
        let mut c = Cursor::new(&[1, 2, 3]);
        assert_eq!(c.uint_be(3, "x").unwrap(), 0x010203);
        assert!(c.u8("y").is_err());
    }
}
