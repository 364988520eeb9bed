//! The one interface of a body rewrite: a [`Stage`] moves bytes from its
//! input to its output. The pipeline (`stream`) chains stages; the codecs
//! (`compress`), the rewrites (`html`, `css`) and the driver's recorder are
//! stages.

use crate::body::BoxError;

/// One step of a body transformation. Stages are synchronous: they only
/// move bytes from `input` to `out`, and their output is about the size of
/// their input (decoding, which is not, is done by the pipeline itself).
pub trait Stage: Send {
    fn push(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), BoxError>;
    /// The input has ended: write whatever is held back.
    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), BoxError>;
}

/// A stage chosen at run time (the driver's recorder, through the proxy's
/// session policy).
impl Stage for Box<dyn Stage> {
    fn push(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), BoxError> {
        (**self).push(input, out)
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), BoxError> {
        (**self).finish(out)
    }
}
