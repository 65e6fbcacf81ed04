//! Close frames (RFC 6455 §5.5.1, §7.4): codes, reasons and their validation.

use crate::ProtocolError;

/// Normal closure.
pub const NORMAL: u16 = 1000;
/// The endpoint is going away.
pub const GOING_AWAY: u16 = 1001;
/// Protocol error.
pub const PROTOCOL_ERROR: u16 = 1002;
/// Data inconsistent with the message type (e.g. bad UTF-8 in text).
pub const INVALID_PAYLOAD: u16 = 1007;
/// A message too big to process.
pub const MESSAGE_TOO_BIG: u16 = 1009;

/// The code and reason a close frame carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    /// The status code.
    pub code: u16,
    /// The reason text (may be empty).
    pub reason: String,
}

/// Whether `code` may be sent in a close frame: 1000–1003, 1007–1014, 3000–4999.
/// 1004–1006 and 1015 are reserved for local use and never go on the wire.
pub fn is_valid_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Parses a close payload. Strict parsing rejects a 1-byte payload, invalid codes and a
/// reason that is not UTF-8; lenient parsing (the ESP firmware's) takes the code from the
/// first two bytes if there are two and the reason lossily.
pub fn parse_payload(payload: &[u8], strict: bool) -> Result<Option<CloseFrame>, ProtocolError> {
    match payload {
        [] => Ok(None),
        [_] if strict => Err(ProtocolError::CloseTooShort),
        [_] => Ok(None),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if strict && !is_valid_code(code) {
                return Err(ProtocolError::InvalidCloseCode(code));
            }
            let reason = match std::str::from_utf8(reason) {
                Ok(text) => text.to_owned(),
                Err(_) if strict => return Err(ProtocolError::InvalidCloseReason),
                Err(_) => String::from_utf8_lossy(reason).into_owned(),
            };
            Ok(Some(CloseFrame { code, reason }))
        }
    }
}

/// Builds a close payload: the code, then the reason cut to fit the 125-byte control
/// frame limit at a character boundary.
pub fn encode_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = Vec::with_capacity(2 + end);
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(&reason.as_bytes()[..end]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_ranges() {
        for ok in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999,
        ] {
            assert!(is_valid_code(ok), "{ok}");
        }
        for bad in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
            assert!(!is_valid_code(bad), "{bad}");
        }
    }

    #[test]
    fn strict_and_lenient_parsing() {
        assert_eq!(parse_payload(&[], true), Ok(None));
        assert_eq!(parse_payload(&[3], true), Err(ProtocolError::CloseTooShort));
        assert_eq!(parse_payload(&[3], false), Ok(None));
        assert_eq!(
            parse_payload(&[0x03, 0xED], true),
            Err(ProtocolError::InvalidCloseCode(1005))
        );
        let bad_reason = [0x03, 0xE8, 0xFF];
        assert_eq!(parse_payload(&bad_reason, true), Err(ProtocolError::InvalidCloseReason));
        assert_eq!(
            parse_payload(&bad_reason, false).map(|f| f.map(|f| f.code)),
            Ok(Some(1000))
        );
        let ok = parse_payload(b"\x03\xe8bye", true);
        assert_eq!(
            ok,
            Ok(Some(CloseFrame {
                code: 1000,
                reason: "bye".into()
            }))
        );
    }

    #[test]
    fn reason_is_cut_at_a_char_boundary() {
        let long = "é".repeat(100);
        let p = encode_payload(1000, &long);
        assert!(p.len() <= 125);
        assert!(std::str::from_utf8(&p[2..]).is_ok());
    }
}
