//! Text encodings (`encoding:`, as the Collector's stanza names them): how lines end and how
//! bytes become text.

/// Text encodings: how lines end and how bytes become text.
#[derive(Clone, Copy)]
pub enum Encoding {
    Utf8,
    /// Bytes passed through; invalid UTF-8 replaced (`nop`).
    Nop,
    Utf16 {
        le: bool,
    },
    Other(&'static encoding_rs::Encoding),
}

pub fn encoding(name: &str) -> Result<Encoding, String> {
    let n = name.trim().to_ascii_lowercase();
    Ok(match n.as_str() {
        "" | "utf-8" | "utf8" | "utf-8-raw" | "ascii" | "us-ascii" => Encoding::Utf8,
        "nop" => Encoding::Nop,
        "utf-16le" | "utf16le" | "utf-16" => Encoding::Utf16 { le: true },
        "utf-16be" | "utf16be" => Encoding::Utf16 { le: false },
        _ => match encoding_rs::Encoding::for_label(n.as_bytes()) {
            Some(e) if e.is_ascii_compatible() => Encoding::Other(e),
            _ => return Err(format!("unsupported encoding `{name}`")),
        },
    })
}

impl Encoding {
    pub fn newline(self) -> &'static [u8] {
        match self {
            Encoding::Utf16 { le: true } => &[b'\n', 0],
            Encoding::Utf16 { le: false } => &[0, b'\n'],
            _ => b"\n",
        }
    }

    pub fn decode(self, b: &[u8]) -> String {
        self.decode_cow(b).into_owned()
    }

    /// Text of `b`, borrowed when it is valid UTF-8 in a UTF-8 encoding.
    pub fn decode_cow(self, b: &[u8]) -> std::borrow::Cow<'_, str> {
        match self {
            Encoding::Utf8 | Encoding::Nop => String::from_utf8_lossy(b),
            _ => std::borrow::Cow::Owned(self.decode_other(b)),
        }
    }

    fn decode_other(self, b: &[u8]) -> String {
        match self {
            Encoding::Utf8 | Encoding::Nop => String::from_utf8_lossy(b).into_owned(),
            Encoding::Utf16 { le } => {
                let e = if le {
                    encoding_rs::UTF_16LE
                } else {
                    encoding_rs::UTF_16BE
                };
                e.decode_without_bom_handling(b).0.into_owned()
            }
            Encoding::Other(e) => e.decode_without_bom_handling(b).0.into_owned(),
        }
    }
}
