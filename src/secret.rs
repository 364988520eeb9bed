//! The secrets the hub hands out (resume secrets, bind tokens, operator
//! login tokens, session ids) and the one way they are compared.

/// 128 random bits as 32 lowercase hex digits.
pub fn new_secret() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Compares secrets in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}
