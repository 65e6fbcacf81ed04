//! Command-line grammar (FIRMWARE.md §1.4): `AT` prefix (any case), command name (upper-cased), and the
//! four command types. Pure: a complete line in, a parsed command or a parser error code out.

use crate::params::Params;

/// Longest line (including CR LF) the parser accepts.
pub(crate) const MAX_LINE: usize = 256;

/// The command type chosen by the character after the name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `AT<name>\r\n` (also the bare `AT\r\n`, and the execute-with-junk form).
    Execute,
    /// `AT<name>?\r\n`.
    Query,
    /// `AT<name>=?\r\n`.
    Test,
    /// `AT<name>=<params>\r\n`.
    Set(Params),
}

/// A successfully parsed line: the name to look up and the command type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParsedLine {
    /// Upper-cased name after `AT` (e.g. `+WSOPEN`, `E0`, or empty for bare `AT`).
    pub name: String,
    /// Requested type (with parameters for set).
    pub kind: Kind,
}

/// Parser failures, each with the core's error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ParseError {
    /// Not starting with AT, longer than 256 bytes, or empty: `0x01030000`.
    NoAt,
    /// Junk after `?` or `=?`: `0x01090000`.
    Unsupported,
}

impl ParseError {
    /// The `ERR CODE` value the core prints (with SYSLOG=1).
    pub fn code(self) -> u32 {
        match self {
            ParseError::NoAt => 0x0103_0000,
            ParseError::Unsupported => 0x0109_0000,
        }
    }
}

/// Characters allowed in a command name (besides a leading `+`).
fn is_name_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'!' | b'%' | b'-' | b'.' | b'/' | b':')
}

/// Parses one line that ends with CR LF (the CR LF included).
pub(crate) fn parse(line: &[u8]) -> Result<ParsedLine, ParseError> {
    if line.len() > MAX_LINE {
        return Err(ParseError::NoAt);
    }
    let body = line.strip_suffix(b"\r\n").ok_or(ParseError::NoAt)?;
    let rest = match body {
        [a, t, rest @ ..] if a.eq_ignore_ascii_case(&b'A') && t.eq_ignore_ascii_case(&b'T') => rest,
        _ => return Err(ParseError::NoAt),
    };
    let mut name = String::new();
    let mut i = 0;
    if rest.first() == Some(&b'+') {
        name.push('+');
        i = 1;
    }
    while i < rest.len() && is_name_char(rest[i]) {
        name.push(rest[i].to_ascii_uppercase() as char);
        i += 1;
    }
    let kind = match rest.get(i) {
        None => Kind::Execute,
        Some(b'?') if i + 1 == rest.len() => Kind::Query,
        Some(b'?') => return Err(ParseError::Unsupported),
        Some(b'=') => match rest.get(i + 1) {
            Some(b'?') if i + 2 == rest.len() => Kind::Test,
            Some(b'?') => return Err(ParseError::Unsupported),
            _ => Kind::Set(Params::split(&rest[i + 1..])),
        },
        Some(_) => {
            // Execute with junk: the lookup name runs to the terminator, but the parameter
            // splitter cuts it at the first unescaped comma (the `AT+GMR,x` quirk).
            let junk = Params::split(&rest[i..]);
            let first = junk.string_raw(0);
            name.push_str(&String::from_utf8_lossy(first));
            Kind::Execute
        }
    };
    Ok(ParsedLine { name, kind })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(line: &[u8]) -> ParsedLine {
        match parse(line) {
            Ok(p) => p,
            Err(e) => panic!("{e:?} for {line:?}"),
        }
    }

    #[test]
    fn bare_at_any_case() {
        for l in [&b"AT\r\n"[..], b"at\r\n", b"aT\r\n", b"At\r\n"] {
            assert_eq!(ok(l).name, "");
            assert_eq!(ok(l).kind, Kind::Execute);
        }
    }

    #[test]
    fn names_are_uppercased() {
        let p = ok(b"at+wsopen?\r\n");
        assert_eq!((p.name.as_str(), p.kind), ("+WSOPEN", Kind::Query));
        assert_eq!(ok(b"ATe0\r\n").name, "E0");
    }

    #[test]
    fn types() {
        assert_eq!(ok(b"AT+X=?\r\n").kind, Kind::Test);
        assert_eq!(ok(b"AT+X=1,2\r\n").kind, Kind::Set(Params::split(b"1,2")));
        assert_eq!(ok(b"AT+X=\r\n").kind, Kind::Set(Params::split(b"")));
    }

    #[test]
    fn junk_after_query_or_test() {
        assert_eq!(parse(b"AT+WSOPEN? \r\n"), Err(ParseError::Unsupported));
        assert_eq!(parse(b"AT+WSOPEN=?x\r\n"), Err(ParseError::Unsupported));
    }

    #[test]
    fn execute_with_junk_and_comma_quirk() {
        assert_eq!(ok(b"AT+GMR \r\n").name, "+GMR ");
        assert_eq!(ok(b"AT+GMR,anything\r\n").name, "+GMR");
        assert_eq!(ok(b"AT+gmr,x\r\n").name, "+GMR");
        assert_eq!(ok(b"AT+GMR x?\r\n").name, "+GMR x?");
    }

    #[test]
    fn no_at() {
        assert_eq!(parse(b"\r\n"), Err(ParseError::NoAt));
        assert_eq!(parse(b"A\r\n"), Err(ParseError::NoAt));
        assert_eq!(parse(b"XAT\r\n"), Err(ParseError::NoAt));
        assert_eq!(parse(b"AT"), Err(ParseError::NoAt));
    }

    #[test]
    fn length_limit_256_including_crlf() {
        let mut line = b"AT+X=".to_vec();
        line.resize(254, b'1');
        line.extend_from_slice(b"\r\n");
        assert_eq!(line.len(), 256);
        assert!(parse(&line).is_ok());
        line.insert(5, b'1');
        assert_eq!(parse(&line), Err(ParseError::NoAt));
    }
}
