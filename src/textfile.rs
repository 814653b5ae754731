//! The small text files an operator names (the configuration, rule files), read with bounds: only
//! a regular file is read, opened without blocking (opening a FIFO would otherwise wait for a
//! writer) and checked on the opened descriptor, so a path swapped for a symlink to a device after
//! any earlier look cannot slip one in; and at most a size limit is read, so `/dev/zero`, a FIFO
//! or a huge file is refused at once instead of hanging or filling memory.

use std::fmt;
use std::fs::{FileType, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Why a text file was not read.
#[derive(Debug, thiserror::Error)]
pub enum TextFileError {
    /// Opening or reading failed (missing, unreadable, not UTF-8).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Not a regular file: a directory, FIFO, device or socket.
    #[error("not a regular file (a {0})")]
    NotRegular(Kind),
    /// Larger than the limit for this kind of file.
    #[error("{size} bytes, over the {max}-byte limit")]
    TooLarge {
        /// The file's size (or what was read of it, when it grew while being read).
        size: u64,
        /// The limit.
        max: u64,
    },
}

/// What a path that is not a regular file turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A directory.
    Directory,
    /// A named pipe.
    Fifo,
    /// A character device (`/dev/zero`, a tty).
    CharDevice,
    /// A block device.
    BlockDevice,
    /// A Unix socket.
    Socket,
    /// Anything else.
    Other,
}

impl Kind {
    fn of(t: FileType) -> Kind {
        if t.is_dir() {
            Kind::Directory
        } else if t.is_fifo() {
            Kind::Fifo
        } else if t.is_char_device() {
            Kind::CharDevice
        } else if t.is_block_device() {
            Kind::BlockDevice
        } else if t.is_socket() {
            Kind::Socket
        } else {
            Kind::Other
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Directory => "directory",
            Kind::Fifo => "FIFO",
            Kind::CharDevice => "character device",
            Kind::BlockDevice => "block device",
            Kind::Socket => "socket",
            Kind::Other => "special file",
        })
    }
}

/// Reads the regular file at `path` (symlinks followed) as UTF-8 text of at most `max` bytes.
pub fn read(path: &Path, max: u64) -> Result<String, TextFileError> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits() | nix::fcntl::OFlag::O_NOCTTY.bits())
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(TextFileError::NotRegular(Kind::of(meta.file_type())));
    }
    if meta.len() > max {
        return Err(TextFileError::TooLarge {
            size: meta.len(),
            max,
        });
    }
    let mut text = String::new();
    file.take(max.saturating_add(1)).read_to_string(&mut text)?;
    let size = text.len() as u64;
    if size > max {
        // It grew between the check and the read.
        return Err(TextFileError::TooLarge { size, max });
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_files_within_the_limit_are_read_others_refused() {
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("small.toml");
        std::fs::write(&small, "a = 1\n").unwrap();
        assert_eq!(read(&small, 6).unwrap(), "a = 1\n");
        let e = read(&small, 5).unwrap_err();
        assert_eq!(e.to_string(), "6 bytes, over the 5-byte limit");

        let e = read(Path::new("/dev/zero"), 1 << 20).unwrap_err();
        assert_eq!(e.to_string(), "not a regular file (a character device)");
        let link = dir.path().join("link.toml");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        assert!(matches!(
            read(&link, 1 << 20),
            Err(TextFileError::NotRegular(Kind::CharDevice))
        ));
        assert!(matches!(
            read(dir.path(), 1 << 20),
            Err(TextFileError::NotRegular(Kind::Directory))
        ));
        let fifo = dir.path().join("fifo.toml");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        // Opening a FIFO without a writer would block without O_NONBLOCK.
        assert!(matches!(
            read(&fifo, 1 << 20),
            Err(TextFileError::NotRegular(Kind::Fifo))
        ));
        let e = read(&dir.path().join("missing.toml"), 1 << 20).unwrap_err();
        assert_eq!(e.to_string(), "No such file or directory (os error 2)");
        std::fs::write(&small, b"\xff\xfe").unwrap();
        assert!(matches!(read(&small, 10), Err(TextFileError::Io(_))));
    }
}
