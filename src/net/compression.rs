//! Request body compression: decoding with a hard output limit (so a small compressed bomb is
//! refused without being inflated past the limit), and encoding for exporters.

use std::io::Read;

use serde::Deserialize;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    #[error("the decompressed body exceeds the limit of {0} bytes")]
    TooLarge(usize),
    #[error("invalid {encoding} body: {msg}")]
    Corrupt { encoding: &'static str, msg: String },
    #[error(
        "unsupported Content-Encoding {0:?} (supported: gzip, zstd, deflate, snappy, identity)"
    )]
    Unsupported(String),
    /// The memory for the output could not be reserved now (see `admission`).
    #[error("{0}")]
    Busy(crate::admission::Refusal),
}

/// Decodes `body` as `encoding` (a `Content-Encoding` value), refusing output over `limit` bytes.
pub fn decode(encoding: &str, body: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    decode_with(encoding, body, limit, &mut |_| Ok(()))
}

/// Inflated output up to this size is not reserved while it inflates.
const UNRESERVED: usize = 64 << 10;

/// [`decode`] with the output's memory reserved against `budget` as it grows (concurrent bombs
/// each inflating to the limit cannot outrun memory_limiter); the reservation is returned with
/// the output.
pub fn decode_reserved(
    encoding: &str,
    body: &[u8],
    limit: usize,
    budget: &std::sync::Arc<crate::admission::Budget>,
) -> Result<(Vec<u8>, crate::admission::Reservation), DecodeError> {
    let mut held = budget.reserve(0).map_err(DecodeError::Busy)?;
    let out = decode_with(encoding, body, limit, &mut |total| {
        // A small body inflates before anything is reserved: admission, which reserves it with
        // its decoded size right after, knows its items and counts them if it refuses.
        if total <= UNRESERVED {
            return Ok(());
        }
        held.grow(total as u64).map_err(DecodeError::Busy)
    })?;
    Ok((out, held))
}

/// [`decode`], calling `grow(total)` before the output buffer grows to `total` bytes.
fn decode_with(
    encoding: &str,
    body: &[u8],
    limit: usize,
    grow: &mut dyn FnMut(usize) -> Result<(), DecodeError>,
) -> Result<Vec<u8>, DecodeError> {
    let enc = encoding.trim().to_ascii_lowercase();
    match enc.as_str() {
        "" | "identity" => {
            if body.len() > limit {
                return Err(DecodeError::TooLarge(limit));
            }
            grow(body.len())?;
            Ok(body.to_vec())
        }
        "gzip" | "x-gzip" => read_limited(
            flate2::read::MultiGzDecoder::new(body),
            limit,
            gzip_size_hint(body),
            "gzip",
            grow,
        ),
        // HTTP "deflate" is zlib-wrapped; some clients send raw deflate, so try both.
        "deflate" => read_limited(
            flate2::read::ZlibDecoder::new(body),
            limit,
            0,
            "deflate",
            grow,
        )
        .or_else(|e| match e {
            DecodeError::Corrupt { .. } => read_limited(
                flate2::read::DeflateDecoder::new(body),
                limit,
                0,
                "deflate",
                grow,
            ),
            other => Err(other),
        }),
        "zstd" => {
            let d = zstd::stream::read::Decoder::new(body).map_err(|e| DecodeError::Corrupt {
                encoding: "zstd",
                msg: e.to_string(),
            })?;
            let hint = zstd::zstd_safe::get_frame_content_size(body)
                .ok()
                .flatten()
                .unwrap_or(0);
            read_limited(d, limit, hint, "zstd", grow)
        }
        "snappy" => {
            // Block format: the length is in the header, so check it before allocating.
            let n = snap::raw::decompress_len(body).map_err(|e| DecodeError::Corrupt {
                encoding: "snappy",
                msg: e.to_string(),
            })?;
            if n > limit {
                return Err(DecodeError::TooLarge(limit));
            }
            grow(n)?;
            snap::raw::Decoder::new()
                .decompress_vec(body)
                .map_err(|e| DecodeError::Corrupt {
                    encoding: "snappy",
                    msg: e.to_string(),
                })
        }
        _ => Err(DecodeError::Unsupported(encoding.to_owned())),
    }
}

/// What `body` says it inflates to, when its format says (gzip's ISIZE, zstd's frame content
/// size, snappy's header); a hint only, the sender may lie.
pub fn size_hint(encoding: &str, body: &[u8]) -> Option<u64> {
    match encoding.trim().to_ascii_lowercase().as_str() {
        "" | "identity" => Some(body.len() as u64),
        "gzip" | "x-gzip" => Some(gzip_size_hint(body)),
        "zstd" => zstd::zstd_safe::get_frame_content_size(body).ok().flatten(),
        "snappy" => snap::raw::decompress_len(body).ok().map(|n| n as u64),
        _ => None,
    }
}

/// The size a gzip body says it inflates to (ISIZE, the last four bytes: the size of the last
/// member modulo 4 GiB). A hint only: the sender may lie.
fn gzip_size_hint(body: &[u8]) -> u64 {
    body.len()
        .checked_sub(4)
        .and_then(|at| body.get(at..))
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(0, |b| u64::from(u32::from_le_bytes(b)))
}

/// Reads all of `r`, refusing more than `limit` bytes. `hint` (the size the body claims, 0 if
/// unknown) sizes the buffer up front, capped by the limit: growing by doubling would hold up
/// to three times the body for a moment (the old buffer while the new one fills), which for a
/// 20 MiB body at the limit was 45 MiB more than needed.
fn read_limited<R: Read>(
    mut r: R,
    limit: usize,
    hint: u64,
    encoding: &'static str,
    grow: &mut dyn FnMut(usize) -> Result<(), DecodeError>,
) -> Result<Vec<u8>, DecodeError> {
    let initial = hint.min(limit as u64) as usize;
    grow(initial)?;
    let mut granted = initial;
    let mut out = Vec::with_capacity(initial);
    let mut chunk = vec![0u8; 32 << 10];
    loop {
        let n = match r.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(DecodeError::Corrupt {
                    encoding,
                    msg: e.to_string(),
                });
            }
        };
        let need = out.len() + n;
        if need > limit {
            return Err(DecodeError::TooLarge(limit));
        }
        if need > granted {
            // Doubling, within the limit: each step is reserved before it is allocated.
            let to = granted.saturating_mul(2).max(need).min(limit);
            grow(to)?;
            out.reserve_exact(to - out.len());
            granted = to;
        }
        out.extend_from_slice(&chunk[..n]);
    }
    Ok(out)
}

/// `compression:` of an exporter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    Gzip,
    Zstd,
    #[serde(alias = "")]
    None,
}

impl Compression {
    pub fn header_value(self) -> Option<&'static str> {
        match self {
            Compression::Gzip => Some("gzip"),
            Compression::Zstd => Some("zstd"),
            Compression::None => None,
        }
    }

    /// Compresses `data` with the fast levels (gzip 1, zstd 1); `None` hands it back without a
    /// copy.
    pub fn encode(self, data: bytes::Bytes) -> std::io::Result<bytes::Bytes> {
        self.encode_with_level(data, 1, 1)
    }

    /// Compresses `data` at the given gzip and zstd levels.
    pub fn encode_with_level(
        self,
        data: bytes::Bytes,
        gzip_level: u32,
        zstd_level: i32,
    ) -> std::io::Result<bytes::Bytes> {
        use std::io::Write;
        Ok(bytes::Bytes::from(match self {
            Compression::None => return Ok(data),
            Compression::Gzip => {
                let mut e = flate2::write::GzEncoder::new(
                    Vec::with_capacity(data.len() / 4),
                    flate2::Compression::new(gzip_level),
                );
                e.write_all(&data)?;
                e.finish()?
            }
            Compression::Zstd => zstd::bulk::compress(&data, zstd_level)?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_limits() {
        let data = vec![7u8; 10_000];
        for c in [Compression::Gzip, Compression::Zstd] {
            let enc = c.encode(bytes::Bytes::from(data.clone())).unwrap();
            assert_eq!(
                decode(c.header_value().unwrap(), &enc, 10_000).unwrap(),
                data
            );
            assert_eq!(
                decode(c.header_value().unwrap(), &enc, 9_999),
                Err(DecodeError::TooLarge(9_999))
            );
        }
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut z, &data).unwrap();
        assert_eq!(
            decode("deflate", &z.finish().unwrap(), 20_000).unwrap(),
            data
        );
        let s = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        assert_eq!(decode("snappy", &s, 100), Err(DecodeError::TooLarge(100)));
        assert_eq!(
            decode("identity", &data, 100),
            Err(DecodeError::TooLarge(100))
        );
    }

    #[test]
    fn a_gzip_bomb_is_stopped_at_the_limit() {
        let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut z, &vec![0u8; 64 << 20]).unwrap();
        let bomb = z.finish().unwrap();
        assert!(bomb.len() < 128 << 10, "bomb is {} bytes", bomb.len());
        assert_eq!(
            decode("gzip", &bomb, 1 << 20),
            Err(DecodeError::TooLarge(1 << 20))
        );
    }

    #[test]
    fn corrupt_and_unknown_encodings() {
        assert!(matches!(
            decode("gzip", b"not gzip", 100),
            Err(DecodeError::Corrupt {
                encoding: "gzip",
                ..
            })
        ));
        assert!(matches!(
            decode("br", b"x", 100),
            Err(DecodeError::Unsupported(_))
        ));
    }
}
