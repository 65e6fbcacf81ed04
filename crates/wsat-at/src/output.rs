//! Fixed strings of the AT port and URC formatting (FIRMWARE.md §1.2, §8, §9.2). Result codes carry a
//! leading CR LF; URCs and info lines do not.

/// Result code OK.
pub(crate) const OK: &[u8] = b"\r\nOK\r\n";
/// Result code ERROR (also FAIL).
pub(crate) const ERROR: &[u8] = b"\r\nERROR\r\n";
/// Result code SEND OK.
pub(crate) const SEND_OK: &[u8] = b"\r\nSEND OK\r\n";
/// OK followed by the data-input prompt; nothing after `>`.
pub(crate) const PROMPT: &[u8] = b"\r\nOK\r\n\r\n>";
/// Answer to input while a command executes.
pub(crate) const BUSY: &[u8] = b"\r\nbusy p...\r\n";
/// Boot banner.
pub(crate) const READY: &[u8] = b"\r\nready\r\n";
/// What a boot ROM's messages look like on a line read at another baud rate (the ESP32's
/// ROM prints at 74880 baud): printed before the banner by a brown-out with noise.
pub(crate) const BOOT_NOISE: &[u8] =
    b"\x00\xe0\x1c\x8c\xf2n\x9c\xe2\x0c\x0cr\x8c\xec\x12\x8c\x9c\x80\xfc\x00l\x9c\x8c\xe2\x0c\xff";
/// Printed when a busy chunk contains `AT+RST\r\n`.
pub(crate) const FORCE_RESTART: &[u8] = b"\r\nWill force to restart!!!\r\n";

/// Core error codes printed as `ERR CODE:` lines (SYSLOG=1 only).
pub(crate) mod code {
    /// Unknown command, or junk after `?`/`=?`.
    pub const UNSUPPORTED: u32 = 0x0109_0000;
    /// Input while busy.
    pub const PROCESSING: u32 = 0x010b_0000;
}

/// The final result of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResultCode {
    /// `\r\nOK\r\n`.
    Ok,
    /// `\r\nERROR\r\n`.
    Error,
    /// `\r\nSEND OK\r\n`.
    SendOk,
}

impl ResultCode {
    /// The bytes written for this result.
    pub fn bytes(self) -> &'static [u8] {
        match self {
            ResultCode::Ok => OK,
            ResultCode::Error => ERROR,
            ResultCode::SendOk => SEND_OK,
        }
    }
}

/// `ERR CODE:0x%08x\r\n` (lowercase hex, no leading CR LF).
pub(crate) fn err_code(code: u32) -> Vec<u8> {
    format!("ERR CODE:0x{code:08x}\r\n").into_bytes()
}

/// `+WS_CONNECTED:<id>\r\n`.
pub(crate) fn ws_connected(id: usize) -> Vec<u8> {
    format!("+WS_CONNECTED:{id}\r\n").into_bytes()
}

/// `+WS_DISCONNECTED:<id>\r\n`.
pub(crate) fn ws_disconnected(id: usize) -> Vec<u8> {
    format!("+WS_DISCONNECTED:{id}\r\n").into_bytes()
}

/// `+WS_CLOSED:<id>\r\n`.
pub(crate) fn ws_closed(id: usize) -> Vec<u8> {
    format!("+WS_CLOSED:{id}\r\n").into_bytes()
}

/// AT+WSDATAFMT settings of one link (master; v5 always uses the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DataFormat {
    /// 0 chunk, 1 frame, 2 message.
    pub level: u8,
    /// bit0 opcode, bit1 fin, bit2 payload_len, bit3 offset, bit4 data_len, bit5 trailer.
    pub mask: u8,
}

impl Default for DataFormat {
    /// Level 0, mask 48: exactly the v5 `+WS_DATA:<id>,<len>,<data>\r\n`.
    fn default() -> Self {
        DataFormat { level: 0, mask: 48 }
    }
}

/// One received chunk as a [`crate::LinkEvent::Data`] describes it, borrowed for formatting
/// (not `wsat_proto::DataChunk`, which owns its bytes).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReceivedChunk<'a> {
    /// Frame opcode.
    pub opcode: u8,
    /// Frame FIN bit.
    pub fin: bool,
    /// Whole frame payload length.
    pub payload_len: u64,
    /// Offset of `data` within the frame.
    pub offset: u64,
    /// The chunk bytes.
    pub data: &'a [u8],
}

/// Formats one `+WS_DATA` write; `None` when there is nothing to write (control/reserved opcodes,
/// or a middle chunk without header/trailer that carries no bytes).
pub(crate) fn ws_data(id: usize, fmt: DataFormat, chunk: ReceivedChunk<'_>) -> Option<Vec<u8>> {
    if chunk.opcode > 2 {
        return None;
    }
    let len = chunk.data.len() as u64;
    let first = chunk.offset == 0;
    let last = chunk.offset.saturating_add(len) >= chunk.payload_len;
    let (header, trailer) = match fmt.level {
        0 => (true, true),
        1 => (first, last),
        _ => (first && chunk.opcode != 0, last && chunk.fin),
    };
    let mut out = Vec::with_capacity(chunk.data.len() + 48);
    if header {
        out.extend_from_slice(format!("+WS_DATA:{id},").as_bytes());
        let fields = [
            u64::from(chunk.opcode),
            u64::from(chunk.fin),
            chunk.payload_len,
            chunk.offset,
            len,
        ];
        for (bit, value) in fields.iter().enumerate() {
            if fmt.mask & (1 << bit) != 0 {
                out.extend_from_slice(format!("{value},").as_bytes());
            }
        }
    }
    out.extend_from_slice(chunk.data);
    if trailer && fmt.mask & 0x20 != 0 {
        out.extend_from_slice(b"\r\n");
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(opcode: u8, fin: bool, payload_len: u64, offset: u64, data: &[u8]) -> ReceivedChunk<'_> {
        ReceivedChunk {
            opcode,
            fin,
            payload_len,
            offset,
            data,
        }
    }

    #[test]
    fn err_code_is_lowercase_8_digits() {
        assert_eq!(err_code(0x010b_0000), b"ERR CODE:0x010b0000\r\n");
        assert_eq!(err_code(0x0108_0001), b"ERR CODE:0x01080001\r\n");
    }

    #[test]
    fn v5_format() {
        let f = DataFormat::default();
        assert_eq!(
            ws_data(0, f, chunk(1, true, 4, 0, b"test")).as_deref(),
            Some(&b"+WS_DATA:0,4,test\r\n"[..])
        );
        assert_eq!(
            ws_data(2, f, chunk(2, true, 0, 0, b"")).as_deref(),
            Some(&b"+WS_DATA:2,0,\r\n"[..])
        );
        assert_eq!(
            ws_data(1, f, chunk(0, false, 2500, 1024, b"a\r\n\0")).as_deref(),
            Some(&b"+WS_DATA:1,4,a\r\n\0\r\n"[..])
        );
        for op in 3..=15 {
            assert_eq!(ws_data(0, f, chunk(op, true, 1, 0, b"x")), None);
        }
    }

    #[test]
    fn all_fields_in_order() {
        let f = DataFormat { level: 0, mask: 63 };
        assert_eq!(
            ws_data(0, f, chunk(2, false, 10, 4, b"abc")).as_deref(),
            Some(&b"+WS_DATA:0,2,0,10,4,3,abc\r\n"[..])
        );
        let no_trailer = DataFormat { level: 0, mask: 1 };
        assert_eq!(
            ws_data(0, no_trailer, chunk(1, true, 3, 0, b"abc")).as_deref(),
            Some(&b"+WS_DATA:0,1,abc"[..])
        );
    }

    #[test]
    fn frame_level() {
        let f = DataFormat { level: 1, mask: 48 };
        assert_eq!(
            ws_data(0, f, chunk(1, true, 6, 0, b"ab")).as_deref(),
            Some(&b"+WS_DATA:0,2,ab"[..])
        );
        assert_eq!(ws_data(0, f, chunk(1, true, 6, 2, b"cd")).as_deref(), Some(&b"cd"[..]));
        assert_eq!(
            ws_data(0, f, chunk(1, true, 6, 4, b"ef")).as_deref(),
            Some(&b"ef\r\n"[..])
        );
    }

    #[test]
    fn message_level() {
        let f = DataFormat { level: 2, mask: 4 | 32 };
        assert_eq!(
            ws_data(0, f, chunk(1, false, 2, 0, b"ab")).as_deref(),
            Some(&b"+WS_DATA:0,2,ab"[..])
        );
        assert_eq!(
            ws_data(0, f, chunk(0, true, 2, 0, b"cd")).as_deref(),
            Some(&b"cd\r\n"[..])
        );
        assert_eq!(ws_data(0, f, chunk(0, false, 0, 0, b"")), None);
    }
}
