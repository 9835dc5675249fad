//! Framing: every message travels as one frame.
//!
//! ```text
//! +----------------+---------+------------------------------+
//! | len: u32 (BE)  | version | postcard(Envelope)           |
//! +----------------+---------+------------------------------+
//!                  |<-------------- len bytes ------------->|
//! ```
//!
//! `len` counts the version byte and the body. A frame whose `len` exceeds the
//! codec's maximum is refused before its body is read, so a peer cannot make
//! us allocate more than the maximum. Every failure is a typed
//! [`DecodeError`]; the transport closes the stream that produced it.

use crate::message::Envelope;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The format version written in every frame. Bump it on any incompatible
/// change of [`Envelope`]'s encoding (2: lots carry `made_ms`, flows their
/// recipes; 3: coordinators answer errors as a typed `ServiceError`; 4:
/// recipe reads and compare-and-set updates; 6: stages watch their slice
/// of the flow).
pub const FORMAT_VERSION: u8 = 6;

/// Length of the prefix that precedes every frame.
pub const LEN_PREFIX: usize = 4;

/// The default maximum frame size (version byte + body): 1 MiB.
pub const DEFAULT_MAX_FRAME: usize = 1 << 20;

/// Why a frame could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("frame of {len} bytes exceeds the maximum of {max} bytes")]
    TooLong { len: usize, max: usize },
    #[error("frame format version {found} is not supported (this build speaks {expected})")]
    BadVersion { found: u8, expected: u8 },
    #[error("frame truncated: needed {needed} bytes, got {got}")]
    Truncated { needed: usize, got: usize },
    #[error("malformed frame: {0}")]
    Malformed(String),
    #[error("i/o error while reading a frame: {0}")]
    Io(#[from] std::io::Error),
}

/// Why a message could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("message of {len} bytes exceeds the maximum frame of {max} bytes")]
    TooLong { len: usize, max: usize },
    #[error("message could not be serialized: {0}")]
    Serialize(String),
    #[error("i/o error while writing a frame: {0}")]
    Io(#[from] std::io::Error),
}

/// Encodes and decodes frames with a maximum frame size.
#[derive(Debug, Clone, Copy)]
pub struct FrameCodec {
    max_frame: usize,
}

impl Default for FrameCodec {
    fn default() -> Self {
        FrameCodec::new(DEFAULT_MAX_FRAME)
    }
}

impl FrameCodec {
    /// A codec refusing frames longer than `max_frame` bytes (at least 1).
    pub fn new(max_frame: usize) -> Self {
        FrameCodec {
            max_frame: max_frame.clamp(1, u32::MAX as usize),
        }
    }

    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Encodes `env` as one complete frame (prefix included).
    pub fn encode(&self, env: &Envelope) -> Result<Vec<u8>, EncodeError> {
        let mut out = vec![0u8; LEN_PREFIX + 1];
        out[LEN_PREFIX] = FORMAT_VERSION;
        let mut out =
            postcard::to_extend(env, out).map_err(|e| EncodeError::Serialize(e.to_string()))?;
        let len = out.len() - LEN_PREFIX;
        if len > self.max_frame {
            return Err(EncodeError::TooLong {
                len,
                max: self.max_frame,
            });
        }
        out[..LEN_PREFIX].copy_from_slice(&(len as u32).to_be_bytes());
        Ok(out)
    }

    /// Decodes one complete frame (prefix included); trailing bytes are an error.
    pub fn decode(&self, frame: &[u8]) -> Result<Envelope, DecodeError> {
        if frame.len() < LEN_PREFIX {
            return Err(DecodeError::Truncated {
                needed: LEN_PREFIX,
                got: frame.len(),
            });
        }
        let len = self.check_len(&frame[..LEN_PREFIX])?;
        let body = &frame[LEN_PREFIX..];
        if body.len() < len {
            return Err(DecodeError::Truncated {
                needed: len,
                got: body.len(),
            });
        }
        if body.len() > len {
            return Err(DecodeError::Malformed(format!(
                "{} bytes after the end of the frame",
                body.len() - len
            )));
        }
        decode_body(body)
    }

    /// Reads one frame. `Ok(None)` is a clean end of stream at a frame boundary.
    pub async fn read<R: AsyncRead + Unpin>(
        &self,
        r: &mut R,
    ) -> Result<Option<Envelope>, DecodeError> {
        let mut prefix = [0u8; LEN_PREFIX];
        let got = read_full(r, &mut prefix).await?;
        if got == 0 {
            return Ok(None);
        }
        if got < LEN_PREFIX {
            return Err(DecodeError::Truncated {
                needed: LEN_PREFIX,
                got,
            });
        }
        let len = self.check_len(&prefix)?;
        let mut body = vec![0u8; len];
        let got = read_full(r, &mut body).await?;
        if got < len {
            return Err(DecodeError::Truncated { needed: len, got });
        }
        decode_body(&body).map(Some)
    }

    /// Writes `env` as one frame.
    pub async fn write<W: AsyncWrite + Unpin>(
        &self,
        w: &mut W,
        env: &Envelope,
    ) -> Result<(), EncodeError> {
        let frame = self.encode(env)?;
        w.write_all(&frame).await?;
        Ok(())
    }

    fn check_len(&self, prefix: &[u8]) -> Result<usize, DecodeError> {
        let len = u32::from_be_bytes(prefix.try_into().expect("prefix is 4 bytes")) as usize;
        if len > self.max_frame {
            return Err(DecodeError::TooLong {
                len,
                max: self.max_frame,
            });
        }
        if len == 0 {
            return Err(DecodeError::Malformed(
                "empty frame (no format version byte)".into(),
            ));
        }
        Ok(len)
    }
}

/// Decodes the version byte and body of a frame (`len` bytes, prefix removed).
fn decode_body(body: &[u8]) -> Result<Envelope, DecodeError> {
    let (&version, rest) = body
        .split_first()
        .ok_or_else(|| DecodeError::Malformed("empty frame (no format version byte)".into()))?;
    if version != FORMAT_VERSION {
        return Err(DecodeError::BadVersion {
            found: version,
            expected: FORMAT_VERSION,
        });
    }
    let (env, trailing) = postcard::take_from_bytes::<Envelope>(rest)
        .map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if !trailing.is_empty() {
        return Err(DecodeError::Malformed(format!(
            "{} bytes after the message inside the frame",
            trailing.len()
        )));
    }
    Ok(env)
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
async fn read_full<R: AsyncRead + Unpin>(r: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = r.read(&mut buf[filled..]).await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{FlowVersion, NodeId};
    use crate::message::Message;

    fn hb() -> Envelope {
        Envelope::new(NodeId(1), FlowVersion(2), Message::Heartbeat { seq: 3 })
    }

    #[test]
    fn round_trip_one_frame() {
        let codec = FrameCodec::default();
        let frame = codec.encode(&hb()).unwrap();
        assert_eq!(frame[LEN_PREFIX], FORMAT_VERSION);
        assert_eq!(codec.decode(&frame).unwrap(), hb());
    }

    #[test]
    fn too_long_is_refused_before_reading_the_body() {
        let codec = FrameCodec::new(16);
        let frame = [0, 0, 0, 17];
        assert!(matches!(
            codec.decode(&frame),
            Err(DecodeError::TooLong { len: 17, max: 16 })
        ));
    }

    #[test]
    fn bad_version_is_typed() {
        let codec = FrameCodec::default();
        let mut frame = codec.encode(&hb()).unwrap();
        frame[LEN_PREFIX] = 9;
        assert!(matches!(
            codec.decode(&frame),
            Err(DecodeError::BadVersion {
                found: 9,
                expected: FORMAT_VERSION
            })
        ));
    }

    #[test]
    fn truncated_prefix_and_body_are_typed() {
        let codec = FrameCodec::default();
        let frame = codec.encode(&hb()).unwrap();
        assert!(matches!(
            codec.decode(&frame[..2]),
            Err(DecodeError::Truncated { needed: 4, got: 2 })
        ));
        let cut = frame.len() - 1;
        let needed = frame.len() - LEN_PREFIX;
        match codec.decode(&frame[..cut]) {
            Err(DecodeError::Truncated { needed: n, got }) => {
                assert_eq!((n, got), (needed, needed - 1))
            }
            other => panic!("expected Truncated, got {other:?}"),
        }
    }

    #[test]
    fn malformed_body_empty_frame_and_trailing_bytes_are_typed() {
        let codec = FrameCodec::default();
        // An enum variant index no Message has.
        let garbage = [0, 0, 0, 4, FORMAT_VERSION, 1, 2, 0xff];
        assert!(matches!(
            codec.decode(&garbage),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            codec.decode(&[0, 0, 0, 0]),
            Err(DecodeError::Malformed(m)) if m.contains("empty frame")
        ));
        let mut frame = codec.encode(&hb()).unwrap();
        frame.push(0);
        assert!(matches!(
            codec.decode(&frame),
            Err(DecodeError::Malformed(m)) if m.contains("after the end")
        ));
        // Trailing bytes inside the declared length.
        let mut frame = codec.encode(&hb()).unwrap();
        frame.push(0);
        let len = (frame.len() - LEN_PREFIX) as u32;
        frame[..4].copy_from_slice(&len.to_be_bytes());
        assert!(matches!(
            codec.decode(&frame),
            Err(DecodeError::Malformed(m)) if m.contains("inside the frame")
        ));
    }

    #[test]
    fn encode_refuses_a_message_over_the_maximum() {
        let codec = FrameCodec::new(8);
        let env = Envelope::new(
            NodeId(1),
            FlowVersion(0),
            Message::RaftResponse {
                result: Ok(vec![7; 64]),
            },
        );
        assert!(matches!(
            codec.encode(&env),
            Err(EncodeError::TooLong { max: 8, .. })
        ));
    }

    #[tokio::test]
    async fn async_read_sees_frames_clean_eof_and_truncation() {
        let codec = FrameCodec::default();
        let mut bytes = codec.encode(&hb()).unwrap();
        bytes.extend(codec.encode(&hb()).unwrap());
        let mut r = &bytes[..];
        assert_eq!(codec.read(&mut r).await.unwrap(), Some(hb()));
        assert_eq!(codec.read(&mut r).await.unwrap(), Some(hb()));
        assert!(codec.read(&mut r).await.unwrap().is_none());

        let cut = &bytes[..bytes.len() - 1];
        let mut r = cut;
        codec.read(&mut r).await.unwrap();
        assert!(matches!(
            codec.read(&mut r).await,
            Err(DecodeError::Truncated { .. })
        ));
        let mut r = &[0u8, 0][..];
        assert!(matches!(
            codec.read(&mut r).await,
            Err(DecodeError::Truncated { needed: 4, got: 2 })
        ));
    }
}
