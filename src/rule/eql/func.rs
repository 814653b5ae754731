//! EQL's scalar functions and arithmetic, as Elasticsearch's scripts compute them (Java string
//! semantics: UTF-16 indices, `Locale.ROOT` lower-casing, Java's double formatting).

use std::borrow::Cow;
use std::net::IpAddr;

use super::ast::ArithOp;
use super::value::{Cidr, Val};

/// The scalar functions evaluated in scripts. `fold` is the `~` form, which lower-cases as Java's
/// `toLowerCase(Locale.ROOT)` does (full Unicode), as Elasticsearch's script functions do.
#[derive(Clone, Debug, PartialEq)]
pub enum Func {
    /// `between(source, left, right[, greedy])`
    Between {
        /// `~`
        fold: bool,
    },
    /// `cidrMatch(ip, blocks…)`, the blocks parsed at compile time.
    CidrMatch(Vec<Cidr>),
    /// `concat(values…)`
    Concat,
    /// `endsWith(source, suffix)`
    EndsWith {
        /// `~`
        fold: bool,
    },
    /// `indexOf(source, substring[, start])`
    IndexOf {
        /// `~`
        fold: bool,
    },
    /// `length(string)`
    Length,
    /// `number(string[, base])`
    Number,
    /// `startsWith(source, prefix)`
    StartsWith {
        /// `~`
        fold: bool,
    },
    /// `string(value)`
    ToString,
    /// `stringContains(source, substring)`
    StringContains {
        /// `~`
        fold: bool,
    },
    /// `substring(source, start[, end])`
    Substring,
}

/// Arithmetic as Elasticsearch's scripts do it: integers stay integers (division truncates), any
/// float makes a float; `null` for null or non-numeric operands, overflow (Elasticsearch fails the
/// search), and division or modulo by zero.
pub fn arith(op: ArithOp, a: &Val<'_>, b: &Val<'_>) -> Val<'static> {
    match (a, b) {
        (Val::Int(x), Val::Int(y)) => {
            let r = match op {
                ArithOp::Add => x.checked_add(*y),
                ArithOp::Sub => x.checked_sub(*y),
                ArithOp::Mul => x.checked_mul(*y),
                ArithOp::Div => x.checked_div(*y),
                ArithOp::Mod => x.checked_rem(*y),
            };
            r.map_or(Val::Null, Val::Int)
        }
        _ => {
            let (Some(x), Some(y)) = (a.as_f64(), b.as_f64()) else {
                return Val::Null;
            };
            if matches!(op, ArithOp::Div | ArithOp::Mod) && y == 0.0 {
                return Val::Null;
            }
            Val::Float(match op {
                ArithOp::Add => x + y,
                ArithOp::Sub => x - y,
                ArithOp::Mul => x * y,
                ArithOp::Div => x / y,
                ArithOp::Mod => x % y,
            })
        }
    }
}

pub(super) fn lower(s: &str, fold: bool) -> Cow<'_, str> {
    if fold {
        Cow::Owned(s.to_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

fn utf16(s: &str) -> Vec<u16> {
    s.encode_utf16().collect()
}

fn u16_bytes(units: &[u16]) -> Vec<u8> {
    units.iter().flat_map(|u| u.to_le_bytes()).collect()
}

/// First index ≥ `from` of `needle` in `hay` (UTF-16 units), linear time.
fn utf16_find(hay: &[u16], needle: &[u16], from: usize) -> Option<usize> {
    let tail = hay.get(from..)?;
    if needle.is_empty() {
        return Some(from);
    }
    let (h, n) = (u16_bytes(tail), u16_bytes(needle));
    memchr::memmem::find_iter(&h, &n)
        .find(|p| p % 2 == 0)
        .map(|p| from + p / 2)
}

/// Last index of `needle` in `hay` (UTF-16 units), linear time.
fn utf16_rfind(hay: &[u16], needle: &[u16]) -> Option<usize> {
    if needle.is_empty() {
        return Some(hay.len());
    }
    let (h, n) = (u16_bytes(hay), u16_bytes(needle));
    memchr::memmem::rfind_iter(&h, &n)
        .find(|p| p % 2 == 0)
        .map(|p| p / 2)
}

fn int_arg(v: Option<&Val<'_>>) -> Option<Option<i64>> {
    match v {
        None | Some(Val::Null) => Some(None),
        Some(Val::Int(i)) => Some(Some(*i)),
        Some(_) => None,
    }
}

pub(super) fn call<'e>(func: &Func, args: &[Val<'e>]) -> Val<'e> {
    let arg = |i: usize| args.get(i).unwrap_or(&Val::Null);
    let text = |i: usize| arg(i).as_str();
    match func {
        Func::Length => text(0).map_or(Val::Null, |s| {
            Val::Int(i64::try_from(s.encode_utf16().count()).unwrap_or(i64::MAX))
        }),
        Func::StartsWith { fold } | Func::EndsWith { fold } => {
            let (Some(s), Some(p)) = (text(0), text(1)) else {
                return Val::Null;
            };
            let (s, p) = (lower(s, *fold), lower(p, *fold));
            Val::Bool(if matches!(func, Func::StartsWith { .. }) {
                s.starts_with(p.as_ref())
            } else {
                s.ends_with(p.as_ref())
            })
        }
        Func::StringContains { fold } => {
            let (Some(s), Some(p)) = (text(0), text(1)) else {
                return Val::Null;
            };
            if s.is_empty() || p.is_empty() {
                return Val::Bool(false);
            }
            let (s, p) = (lower(s, *fold), lower(p, *fold));
            Val::Bool(memchr::memmem::find(s.as_bytes(), p.as_bytes()).is_some())
        }
        Func::IndexOf { fold } => {
            let (Some(s), Some(p)) = (text(0), text(1)) else {
                return Val::Null;
            };
            let start = match int_arg(args.get(2)) {
                Some(Some(n)) => n.max(0),
                Some(None) if args.len() > 2 => return Val::Null,
                Some(None) => 0,
                None => return Val::Null,
            };
            let (s, p) = (utf16(&lower(s, *fold)), utf16(&lower(p, *fold)));
            let Ok(start) = usize::try_from(start) else {
                return Val::Null;
            };
            if start > s.len() {
                return Val::Null;
            }
            utf16_find(&s, &p, start)
                .and_then(|i| i64::try_from(i).ok())
                .map_or(Val::Null, Val::Int)
        }
        Func::Between { fold } => between(args, *fold),
        Func::Substring => {
            let Some(s) = text(0) else {
                return Val::Null;
            };
            let (Some(Some(start)), Some(end)) = (int_arg(args.get(1)), int_arg(args.get(2)))
            else {
                return Val::Null;
            };
            Val::Str(Cow::Owned(substring(s, start, end)))
        }
        Func::Number => number(arg(0), args.get(1)),
        Func::ToString => to_string(arg(0)).map_or(Val::Null, |s| Val::Str(Cow::Owned(s))),
        Func::Concat => {
            let mut out = String::new();
            for v in args {
                match to_string(v) {
                    Some(s) => out.push_str(&s),
                    None => return Val::Null,
                }
            }
            Val::Str(Cow::Owned(out))
        }
        Func::CidrMatch(blocks) => match arg(0) {
            Val::Str(s) => Val::Bool(
                s.trim()
                    .parse::<IpAddr>()
                    .is_ok_and(|ip| blocks.iter().any(|b| b.contains(ip))),
            ),
            _ => Val::Null,
        },
    }
}

/// `between`, as Elasticsearch's EQL implements it (a port of the original Python EQL): indices
/// found in the (lower-cased) text are applied to the original text, in UTF-16 units.
fn between<'e>(args: &[Val<'e>], fold: bool) -> Val<'e> {
    let arg = |i: usize| args.get(i).unwrap_or(&Val::Null);
    let (Some(s), Some(left), Some(right)) = (arg(0).as_str(), arg(1).as_str(), arg(2).as_str())
    else {
        return Val::Null;
    };
    let greedy = match arg(3) {
        Val::Bool(b) => *b,
        Val::Null => false,
        _ => return Val::Null,
    };
    if s.is_empty() || left.is_empty() || right.is_empty() {
        return Val::Str(Cow::Owned(s.to_string()));
    }
    let original = utf16(s);
    let (hay, left, right) = (
        utf16(&lower(s, fold)),
        utf16(&lower(left, fold)),
        utf16(&lower(right, fold)),
    );
    let empty = || Val::Str(Cow::Borrowed(""));
    let Some(at) = utf16_find(&hay, &left, 0) else {
        return empty();
    };
    let start = at + left.len();
    let end = if greedy {
        utf16_rfind(&hay, &right)
    } else {
        utf16_find(&hay, &right, start)
    };
    let Some(end) = end else {
        return empty();
    };
    match original.get(start..end) {
        Some(units) => Val::Str(Cow::Owned(String::from_utf16_lossy(units))),
        // Java's substring throws here (e.g. greedy with the last `right` before `left`).
        None => Val::Null,
    }
}

/// Python-style slice in UTF-16 units (negative positions count from the end).
fn substring(s: &str, start: i64, end: Option<i64>) -> String {
    let units = utf16(s);
    let len = i64::try_from(units.len()).unwrap_or(i64::MAX);
    let clamp = |p: i64| {
        let p = if p < 0 { p.saturating_add(len) } else { p };
        p.clamp(0, len)
    };
    let (from, to) = (clamp(start), clamp(end.unwrap_or(len)));
    if from >= to {
        return String::new();
    }
    let (from, to) = (
        usize::try_from(from).unwrap_or(0),
        usize::try_from(to).unwrap_or(0),
    );
    String::from_utf16_lossy(units.get(from..to).unwrap_or(&[]))
}

/// `number(s[, base])`: surrounding whitespace ignored, `+`/`-` accepted, `0x` means base 16;
/// base 10 gives an integer or a decimal, other bases integers. `null` when it does not parse
/// (Elasticsearch fails the search).
fn number<'e>(source: &Val<'e>, base: Option<&Val<'e>>) -> Val<'e> {
    let Val::Str(s) = source else {
        return Val::Null;
    };
    let s = s.trim();
    let hex = s.starts_with("0x");
    let radix = match base {
        None | Some(Val::Null) => {
            if hex {
                16
            } else {
                10
            }
        }
        Some(Val::Int(b)) if (2..=36).contains(b) => *b as u32,
        _ => return Val::Null,
    };
    let body = if hex && radix == 16 {
        s.get(2..).unwrap_or("")
    } else {
        s
    };
    if radix == 10 {
        let (sign, digits) = match body.strip_prefix('-') {
            Some(rest) => (-1.0, rest),
            None => (1.0, body.strip_prefix('+').unwrap_or(body)),
        };
        let valid = !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            && digits.bytes().filter(|&b| b == b'.').count() <= 1
            && digits.bytes().any(|b| b.is_ascii_digit());
        if !valid {
            return Val::Null;
        }
        if !digits.contains('.') {
            if let Ok(i) = body.trim_start_matches('+').parse::<i64>() {
                return Val::Int(i);
            }
        }
        return digits
            .parse::<f64>()
            .map_or(Val::Null, |f| Val::Float(sign * f));
    }
    if body.is_empty() || body.starts_with('+') && body.len() == 1 {
        return Val::Null;
    }
    i64::from_str_radix(body.trim_start_matches('+'), radix).map_or(Val::Null, Val::Int)
}

/// `string(v)`: strings as they are, numbers as Java prints them, booleans as `true`/`false`.
pub fn to_string(v: &Val<'_>) -> Option<String> {
    Some(match v {
        Val::Null => return None,
        Val::Str(s) => s.to_string(),
        Val::Bool(b) => b.to_string(),
        Val::Int(i) => i.to_string(),
        Val::Float(f) => java_double(*f),
    })
}

/// Java's `Double.toString`: plain with at least one decimal between 10^-3 and 10^7, otherwise
/// `d.dddE±n`; shortest round-trip digits.
fn java_double(f: f64) -> String {
    if f.is_nan() {
        return "NaN".to_string();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.to_string();
    }
    let a = f.abs();
    if a == 0.0 || (1e-3..1e7).contains(&a) {
        let s = format!("{f}");
        return if s.contains('.') { s } else { format!("{s}.0") };
    }
    let s = format!("{f:e}");
    let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let mantissa = if mantissa.contains('.') {
        mantissa.to_string()
    } else {
        format!("{mantissa}.0")
    };
    format!("{mantissa}E{exp}")
}
