//! EQL values (what a field or an expression yields) and CIDR blocks, shared by the evaluator and
//! the functions.

use std::borrow::Cow;
use std::net::IpAddr;

use crate::rule::kql::Scalar;

/// An EQL value.
#[derive(Clone, Debug, PartialEq)]
pub enum Val<'a> {
    /// `null`, or a field without values.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer (Elasticsearch's `long`).
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A string.
    Str(Cow<'a, str>),
}

impl<'a> Val<'a> {
    pub(crate) fn from_scalar(s: Scalar<'a>) -> Val<'a> {
        match s {
            Scalar::Str(s) => Val::Str(Cow::Borrowed(s)),
            Scalar::Bool(b) => Val::Bool(b),
            Scalar::Num(n) => match n.as_i64() {
                Some(i) => Val::Int(i),
                None => n.as_f64().map_or(Val::Null, Val::Float),
            },
        }
    }

    /// A copy that borrows from `self`.
    pub fn borrowed(&self) -> Val<'_> {
        match self {
            Val::Str(s) => Val::Str(Cow::Borrowed(s.as_ref())),
            Val::Null => Val::Null,
            Val::Bool(b) => Val::Bool(*b),
            Val::Int(i) => Val::Int(*i),
            Val::Float(f) => Val::Float(*f),
        }
    }

    /// An owned copy.
    pub fn into_owned(self) -> Val<'static> {
        match self {
            Val::Str(s) => Val::Str(Cow::Owned(s.into_owned())),
            Val::Null => Val::Null,
            Val::Bool(b) => Val::Bool(b),
            Val::Int(i) => Val::Int(i),
            Val::Float(f) => Val::Float(f),
        }
    }

    pub(super) fn as_str(&self) -> Option<&str> {
        match self {
            Val::Str(s) => Some(s),
            _ => None,
        }
    }

    pub(super) fn as_f64(&self) -> Option<f64> {
        match self {
            Val::Int(i) => Some(*i as f64),
            Val::Float(f) => Some(*f),
            _ => None,
        }
    }
}

/// An IPv4 or IPv6 network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    bits: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n` or `x::/n` (a plain address is a /32 or /128); None if invalid.
    pub fn parse(text: &str) -> Option<Cidr> {
        let text = text.trim();
        let (addr, bits) = match text.split_once('/') {
            Some((a, b)) => (a, b.parse::<u8>().ok()?),
            None => (text, if text.contains(':') { 128 } else { 32 }),
        };
        let net: IpAddr = addr.parse().ok()?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        (bits <= max).then_some(Cidr { net, bits })
    }

    pub(super) fn contains(&self, ip: IpAddr) -> bool {
        let (net, ip, width) = match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => {
                (u128::from(u32::from(n)), u128::from(u32::from(i)), 32)
            }
            (IpAddr::V6(n), IpAddr::V6(i)) => (u128::from(n), u128::from(i), 128),
            _ => return false,
        };
        let bits = u32::from(self.bits);
        if bits == 0 {
            return true;
        }
        let shift = width - bits;
        (net >> shift) == (ip >> shift)
    }
}
