//! Parameter splitting and the two getters every handler uses (FIRMWARE.md §1.4, §1.5): integers with
//! hex/negative/overflow rules and strings with backslash escapes, each returning OK, OMITTED or
//! FAIL exactly as the firmware's `esp_at_get_para_as_digit` / `esp_at_get_para_as_str`.

/// A getter's answer: the firmware's OK(0) / OMITTED(1) / FAIL(−1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Got<T> {
    /// Parsed value.
    Ok(T),
    /// Empty parameter text.
    Omitted,
    /// Malformed, overflowing or missing (index ≥ count).
    Fail,
}

/// Why a getter failed, deciding whether the core prints `ERR CODE:0x0108<index>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GetError {
    /// Malformed or missing parameter: ERR CODE printed (with SYSLOG=1).
    Parse,
    /// Integer overflow: FAIL without ERR CODE.
    Overflow,
}

/// Error code printed for a failing parameter at `index`.
pub(crate) fn para_err_code(index: usize) -> u32 {
    0x0108_0000 | (index as u32 & 0xffff)
}

/// The raw parameter texts of a set command, split as the firmware does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Params {
    items: Vec<Vec<u8>>,
}

impl Params {
    /// Splits the text after `=` (without CR LF) at commas; quotes are ignored and a backslash
    /// makes the splitter skip the next byte. `""` gives one empty parameter.
    pub fn split(raw: &[u8]) -> Self {
        let mut items = Vec::new();
        let mut start = 0;
        let mut i = 0;
        while i < raw.len() {
            match raw[i] {
                b'\\' => i += 2,
                b',' => {
                    items.push(raw[start..i].to_vec());
                    i += 1;
                    start = i;
                }
                _ => i += 1,
            }
        }
        items.push(raw[start.min(raw.len())..].to_vec());
        Params { items }
    }

    /// Parameter count = commas + 1 (0 for non-set commands).
    pub fn count(&self) -> usize {
        self.items.len()
    }

    /// Raw (undecoded) text of parameter `index`, empty if missing.
    pub fn string_raw(&self, index: usize) -> &[u8] {
        self.items.get(index).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Integer getter for parameter `index`.
    pub fn int(&self, index: usize) -> Result<Option<i32>, GetError> {
        match self.items.get(index) {
            None => Err(GetError::Parse),
            Some(text) => parse_int(text),
        }
    }

    /// String getter for parameter `index`.
    pub fn string(&self, index: usize) -> Result<Option<Vec<u8>>, GetError> {
        match self.items.get(index) {
            None => Err(GetError::Parse),
            Some(text) => parse_string(text),
        }
    }
}

/// Parses one integer parameter: `Ok(None)` = omitted (empty text).
///
/// `0x`/`0X` ⇒ hex; leading `-` negates (decimal only); digits accumulate as u32 with overflow
/// detection and the result is reinterpreted as i32 (`4294967295` ⇒ −1); `0x` or `-` alone ⇒ 0.
pub(crate) fn parse_int(text: &[u8]) -> Result<Option<i32>, GetError> {
    if text.is_empty() {
        return Ok(None);
    }
    let (negative, body) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    let (radix, digits) = if !negative && body.len() >= 2 && body[0] == b'0' && (body[1] == b'x' || body[1] == b'X') {
        (16u32, &body[2..])
    } else {
        (10u32, body)
    };
    let mut value: u32 = 0;
    for &b in digits {
        let digit = (b as char).to_digit(radix).ok_or(GetError::Parse)?;
        value = value
            .checked_mul(radix)
            .and_then(|v| v.checked_add(digit))
            .ok_or(GetError::Overflow)?;
    }
    let signed = value as i32;
    Ok(Some(if negative { signed.wrapping_neg() } else { signed }))
}

/// Parses one string parameter: `Ok(None)` = omitted (empty text); `""` ⇒ `Ok(Some(empty))`.
///
/// Must start and end with `"` (a lone `"` counts as both); inside, `\x` ⇒ `x`, an unescaped
/// `"` or a trailing lone backslash fails.
pub(crate) fn parse_string(text: &[u8]) -> Result<Option<Vec<u8>>, GetError> {
    if text.is_empty() {
        return Ok(None);
    }
    if text[0] != b'"' || text[text.len() - 1] != b'"' {
        return Err(GetError::Parse);
    }
    if text.len() == 1 {
        return Ok(Some(Vec::new()));
    }
    let inner = &text[1..text.len() - 1];
    let mut out = Vec::with_capacity(inner.len());
    let mut iter = inner.iter();
    while let Some(&b) = iter.next() {
        match b {
            b'\\' => out.push(*iter.next().ok_or(GetError::Parse)?),
            b'"' => return Err(GetError::Parse),
            _ => out.push(b),
        }
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(p: &Params) -> Vec<&[u8]> {
        p.items.iter().map(Vec::as_slice).collect()
    }

    #[test]
    fn split_ignores_quotes_and_skips_escapes() {
        let p = Params::split(br#"0,"a,b","c\,d",\\,"e\"f""#);
        assert_eq!(
            texts(&p),
            vec![&b"0"[..], br#""a"#, br#"b""#, br#""c\,d""#, br"\\", br#""e\"f""#]
        );
    }

    #[test]
    fn split_empty_is_one_empty_param() {
        assert_eq!(Params::split(b"").count(), 1);
        assert_eq!(Params::split(b",,").count(), 3);
        assert_eq!(Params::split(b"a\\").count(), 1);
    }

    #[test]
    fn integers() {
        assert_eq!(parse_int(b""), Ok(None));
        assert_eq!(parse_int(b"10"), Ok(Some(10)));
        assert_eq!(parse_int(b"010"), Ok(Some(10)));
        assert_eq!(parse_int(b"0x1F"), Ok(Some(31)));
        assert_eq!(parse_int(b"0XaB"), Ok(Some(0xab)));
        assert_eq!(parse_int(b"0x"), Ok(Some(0)));
        assert_eq!(parse_int(b"-"), Ok(Some(0)));
        assert_eq!(parse_int(b"-5"), Ok(Some(-5)));
        assert_eq!(parse_int(b"4294967295"), Ok(Some(-1)));
        assert_eq!(parse_int(b"0xffffffff"), Ok(Some(-1)));
        assert_eq!(parse_int(b"4294967296"), Err(GetError::Overflow));
        assert_eq!(parse_int(b"0x100000000"), Err(GetError::Overflow));
        assert_eq!(parse_int(b"-0x10"), Err(GetError::Parse));
        assert_eq!(parse_int(b"+5"), Err(GetError::Parse));
        assert_eq!(parse_int(b" 5"), Err(GetError::Parse));
        assert_eq!(parse_int(b"\"5\""), Err(GetError::Parse));
        assert_eq!(parse_int(b"0x1g"), Err(GetError::Parse));
        assert_eq!(parse_int(b"12a"), Err(GetError::Parse));
    }

    #[test]
    fn strings() {
        assert_eq!(parse_string(b""), Ok(None));
        assert_eq!(parse_string(b"\"\""), Ok(Some(vec![])));
        assert_eq!(parse_string(b"\""), Ok(Some(vec![])));
        assert_eq!(parse_string(b"\"abc\""), Ok(Some(b"abc".to_vec())));
        assert_eq!(parse_string(br#""a\"b\\c\,d\re""#), Ok(Some(br#"a"b\c,dre"#.to_vec())));
        assert_eq!(parse_string(b"abc"), Err(GetError::Parse));
        assert_eq!(parse_string(b"\"abc"), Err(GetError::Parse));
        assert_eq!(parse_string(b"\"a\"b\""), Err(GetError::Parse));
        assert_eq!(parse_string(b"\"abc\\\""), Err(GetError::Parse));
    }

    #[test]
    fn missing_index_fails_with_code() {
        let p = Params::split(b"1");
        assert_eq!(p.int(1), Err(GetError::Parse));
        assert_eq!(p.string(3), Err(GetError::Parse));
        assert_eq!(para_err_code(1), 0x0108_0001);
        assert_eq!(para_err_code(0x12), 0x0108_0012);
    }
}
