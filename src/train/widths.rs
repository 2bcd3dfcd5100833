//! [`Widths`]: a list of layer widths as the original scripts spell it on the command line (a clap value
//! parser shared by the U-TAE and the pixel-set flags).

use std::str::FromStr;

/// A list of layer widths as the original scripts take it on the command line: `"[64,64,64,128]"`,
/// `"[32, 20]"` or `"64,64,64,128"` (`[]` is the empty list).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Widths(pub Vec<usize>);

impl FromStr for Widths {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Widths, String> {
        let inner = s.trim();
        let inner = inner.strip_prefix('[').unwrap_or(inner);
        let inner = inner.strip_suffix(']').unwrap_or(inner);
        if inner.trim().is_empty() {
            return Ok(Widths(Vec::new()));
        }
        inner
            .split(',')
            .map(|p| p.trim().parse::<usize>())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map(Widths)
            .map_err(|_| format!("expected a list of integers like \"[64,64,64,128]\", got {s:?}"))
    }
}

/// The original's spelling, `[64,64,64,128]`.
impl std::fmt::Display for Widths {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(usize::to_string).collect();
        write!(f, "[{}]", parts.join(","))
    }
}
