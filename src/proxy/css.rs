//! text/css responses: upstream origins in `url()` and `@import` mapped on
//! the byte stream, with a carried tail so a URL cut by a chunk boundary is
//! still found. Everything else passes byte for byte.

use super::site::StreamMapper;
use super::stage::Stage;
use crate::body::BoxError;

impl Stage for StreamMapper {
    fn push(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), BoxError> {
        StreamMapper::push(self, input, out);
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), BoxError> {
        StreamMapper::finish(self, out);
        Ok(())
    }
}
