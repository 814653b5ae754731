//! Sources turn bytes from a file, a pipe or a socket into [`Frame`]s, one audit record each.
//! They know framing only; what a record says is the audit stage's business.

pub mod connector;
pub mod fanotify;
pub mod file;
pub mod live;
pub mod netlink;

/// One record as a source delivered it, still unparsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// One line of an auditd log or of the auditd plugin stream, without its newline.
    Text(Vec<u8>),
    /// One netlink message: the header's type and the text payload after the 16-byte header.
    Netlink { msg_type: u16, payload: Vec<u8> },
}
