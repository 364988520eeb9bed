//! The secrets the hub hands out (resume secrets, bind tokens, operator
//! login tokens, session ids) and the one way they are compared.

/// 128 random bits as 32 lowercase hex digits.
pub fn new_secret() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Whether `s` has the form [`new_secret`] gives (32 lowercase hex
/// digits): what is read back from elsewhere (the hub's checkpoint) is
/// checked like what arrives.
pub fn is_secret(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Compares secrets in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}
