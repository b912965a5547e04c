//! The dom0 initrd: a cpio "newc" archive (magic `070701`, or `070702` with checksums) as
//! Linux's initramfs and `cpio -H newc` write it, parsed without copying into a read-only
//! file tree. Every malformed or truncated archive gives a [`CpioError`], never a panic.
//!
//! Paths are absolute inside the archive (`etc/xen/demo1.cfg` is `/etc/xen/demo1.cfg`);
//! directories exist when the archive has an entry for them or for something below them.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

/// Size of a newc header.
pub const HEADER_LEN: usize = 110;
/// The name of the entry that ends an archive.
pub const TRAILER: &str = "TRAILER!!!";
/// File type bits of `mode`.
pub const S_IFMT: u32 = 0o170000;
/// Directory.
pub const S_IFDIR: u32 = 0o040000;
/// Regular file.
pub const S_IFREG: u32 = 0o100000;

/// Why an archive could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CpioError {
    /// The header at `offset` does not start with `070701`/`070702`.
    BadMagic {
        /// Byte offset of the header.
        offset: usize,
    },
    /// A header field is not 8 hex digits.
    BadField {
        /// Byte offset of the header.
        offset: usize,
        /// The field's name.
        field: &'static str,
    },
    /// The archive ends inside a header, name or file body.
    Truncated {
        /// Byte offset of the entry.
        offset: usize,
    },
    /// A name that is empty, lacks its NUL or is not UTF-8.
    BadName {
        /// Byte offset of the entry.
        offset: usize,
    },
    /// No `TRAILER!!!` entry.
    NoTrailer,
}

impl fmt::Display for CpioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CpioError::BadMagic { offset } => {
                write!(f, "not a cpio newc archive (bad magic at byte {offset})")
            }
            CpioError::BadField { offset, field } => {
                write!(f, "bad {field} field in the header at byte {offset}")
            }
            CpioError::Truncated { offset } => {
                write!(f, "archive truncated in the entry at byte {offset}")
            }
            CpioError::BadName { offset } => write!(f, "bad file name at byte {offset}"),
            CpioError::NoTrailer => write!(f, "archive has no TRAILER!!! entry"),
        }
    }
}

/// One archive member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    /// Path without leading `/` or `./` (`etc/xen/demo1.cfg`).
    pub path: &'a str,
    /// `st_mode`.
    pub mode: u32,
    /// Contents (empty for directories).
    pub data: &'a [u8],
}

impl Entry<'_> {
    /// Whether this entry is a directory.
    pub fn is_dir(&self) -> bool {
        self.mode & S_IFMT == S_IFDIR
    }
}

/// A file-system error, worded as the shell prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FsError {
    /// Nothing at that path.
    NotFound(String),
    /// A directory where a file was wanted.
    IsDir(String),
    /// A file where a directory was wanted.
    NotDir(String),
}

impl fmt::Display for FsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FsError::NotFound(p) => write!(f, "{p}: No such file or directory"),
            FsError::IsDir(p) => write!(f, "{p}: Is a directory"),
            FsError::NotDir(p) => write!(f, "{p}: Not a directory"),
        }
    }
}

/// A parsed archive.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Archive<'a> {
    entries: Vec<Entry<'a>>,
}

fn hex_field(
    bytes: &[u8],
    offset: usize,
    index: usize,
    field: &'static str,
) -> Result<u32, CpioError> {
    let start = offset + 6 + index * 8;
    let text = &bytes[start..start + 8];
    let mut v: u32 = 0;
    for &b in text {
        let d = (b as char)
            .to_digit(16)
            .ok_or(CpioError::BadField { offset, field })?;
        v = (v << 4) | d;
    }
    Ok(v)
}

fn align4(n: usize) -> usize {
    n.div_ceil(4) * 4
}

/// `path` without leading `/`, `./` and trailing `/` (the archive's own form).
pub fn normalize(path: &str) -> &str {
    let mut p = path;
    loop {
        if let Some(rest) = p.strip_prefix("./") {
            p = rest;
        } else if let Some(rest) = p.strip_prefix('/') {
            p = rest;
        } else {
            break;
        }
    }
    let p = p.trim_end_matches('/');
    if p == "." {
        ""
    } else {
        p
    }
}

impl<'a> Archive<'a> {
    /// Parses `bytes` up to the trailer (anything after it, e.g. padding, is ignored).
    pub fn parse(bytes: &'a [u8]) -> Result<Archive<'a>, CpioError> {
        let mut entries = Vec::new();
        let mut offset = 0;
        loop {
            if offset + HEADER_LEN > bytes.len() {
                return if offset >= bytes.len() {
                    Err(CpioError::NoTrailer)
                } else {
                    Err(CpioError::Truncated { offset })
                };
            }
            let magic = &bytes[offset..offset + 6];
            if magic != b"070701" && magic != b"070702" {
                return Err(CpioError::BadMagic { offset });
            }
            let mode = hex_field(bytes, offset, 1, "mode")?;
            let filesize = hex_field(bytes, offset, 6, "filesize")? as usize;
            let namesize = hex_field(bytes, offset, 11, "namesize")? as usize;
            let name_start = offset + HEADER_LEN;
            let name_end = name_start
                .checked_add(namesize)
                .ok_or(CpioError::Truncated { offset })?;
            if namesize == 0 {
                return Err(CpioError::BadName { offset });
            }
            if name_end > bytes.len() {
                return Err(CpioError::Truncated { offset });
            }
            let raw = &bytes[name_start..name_end];
            if raw[namesize - 1] != 0 {
                return Err(CpioError::BadName { offset });
            }
            let name = core::str::from_utf8(&raw[..namesize - 1])
                .map_err(|_| CpioError::BadName { offset })?;
            let data_start = align4(name_end);
            let data_end = data_start
                .checked_add(filesize)
                .ok_or(CpioError::Truncated { offset })?;
            if name == TRAILER {
                return Ok(Archive { entries });
            }
            if data_end > bytes.len() {
                return Err(CpioError::Truncated { offset });
            }
            let path = normalize(name);
            if !path.is_empty() {
                entries.push(Entry {
                    path,
                    mode,
                    data: &bytes[data_start..data_end],
                });
            }
            offset = align4(data_end);
        }
    }

    /// Every entry, in archive order.
    pub fn entries(&self) -> &[Entry<'a>] {
        &self.entries
    }

    fn entry(&self, path: &str) -> Option<&Entry<'a>> {
        let p = normalize(path);
        self.entries.iter().rev().find(|e| e.path == p)
    }

    /// Whether `path` is a directory (the root always is).
    pub fn is_dir(&self, path: &str) -> bool {
        let p = normalize(path);
        p.is_empty()
            || self.entry(p).is_some_and(Entry::is_dir)
            || self.entries.iter().any(|e| {
                e.path
                    .strip_prefix(p)
                    .is_some_and(|rest| rest.starts_with('/'))
            })
    }

    /// The contents of the file at `path`.
    pub fn read(&self, path: &str) -> Result<&'a [u8], FsError> {
        match self.entry(path) {
            Some(e) if e.is_dir() => Err(FsError::IsDir(path.to_string())),
            Some(e) => Ok(e.data),
            None if self.is_dir(path) => Err(FsError::IsDir(path.to_string())),
            None => Err(FsError::NotFound(path.to_string())),
        }
    }

    /// The names directly inside directory `path`, sorted; directories end with `/`.
    pub fn list(&self, path: &str) -> Result<Vec<String>, FsError> {
        let p = normalize(path);
        if !self.is_dir(p) {
            return Err(if self.entry(p).is_some() {
                FsError::NotDir(path.to_string())
            } else {
                FsError::NotFound(path.to_string())
            });
        }
        let mut names: Vec<String> = Vec::new();
        for e in &self.entries {
            let rest = if p.is_empty() {
                e.path
            } else {
                match e.path.strip_prefix(p).and_then(|r| r.strip_prefix('/')) {
                    Some(r) => r,
                    None => continue,
                }
            };
            let (first, below) = match rest.split_once('/') {
                Some((first, _)) => (first, true),
                None => (rest, false),
            };
            let mut name = first.to_string();
            if below || e.is_dir() {
                name.push('/');
            }
            if !names.contains(&name) {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }
}

/// Writes a newc archive of `(path, mode, data)` members with a trailer (for tests and tools).
pub fn write_newc(members: &[(&str, u32, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut push = |name: &str, mode: u32, data: &[u8], ino: u32| {
        let header = alloc::format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            ino,
            mode,
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            0,
            0,
            name.len() + 1,
            0
        );
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        while out.len() % 4 != 0 {
            out.push(0);
        }
        out.extend_from_slice(data);
        while out.len() % 4 != 0 {
            out.push(0);
        }
    };
    for (i, (name, mode, data)) in members.iter().enumerate() {
        push(name, *mode, data, i as u32 + 1);
    }
    push(TRAILER, 0, &[], 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        write_newc(&[
            (".", S_IFDIR | 0o755, b""),
            ("etc", S_IFDIR | 0o755, b""),
            ("etc/xen", S_IFDIR | 0o755, b""),
            ("etc/xen/demo1.cfg", S_IFREG | 0o644, b"name = \"demo1\"\n"),
            ("etc/xen/demo2.cfg", S_IFREG | 0o644, b"name = \"demo2\"\n"),
            ("boot/demo.elf", S_IFREG | 0o644, b"\x7fELFxyz"),
        ])
    }

    #[test]
    fn reads_files_and_directories() {
        let bytes = sample();
        let a = Archive::parse(&bytes).unwrap();
        assert_eq!(a.read("/etc/xen/demo1.cfg").unwrap(), b"name = \"demo1\"\n");
        assert_eq!(a.read("boot/demo.elf").unwrap(), b"\x7fELFxyz");
        assert_eq!(a.list("/").unwrap(), ["boot/", "etc/"]);
        assert_eq!(a.list("/etc/xen/").unwrap(), ["demo1.cfg", "demo2.cfg"]);
        assert_eq!(a.list("/boot").unwrap(), ["demo.elf"]);
        assert!(a.is_dir("/boot"));
        assert_eq!(
            a.read("/etc").unwrap_err().to_string(),
            "/etc: Is a directory"
        );
        assert_eq!(
            a.read("/boot").unwrap_err().to_string(),
            "/boot: Is a directory"
        );
        assert_eq!(
            a.read("/nope").unwrap_err().to_string(),
            "/nope: No such file or directory"
        );
        assert_eq!(
            a.list("/etc/xen/demo1.cfg").unwrap_err().to_string(),
            "/etc/xen/demo1.cfg: Not a directory"
        );
        assert!(matches!(a.list("/x"), Err(FsError::NotFound(_))));
    }

    #[test]
    fn bad_archives_are_errors() {
        let good = sample();
        assert_eq!(Archive::parse(b""), Err(CpioError::NoTrailer));
        assert_eq!(
            Archive::parse(b"070707xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"),
            Err(CpioError::BadMagic { offset: 0 })
        );
        let mut bad = good.clone();
        bad[6 + 6 * 8] = b'g';
        assert_eq!(
            Archive::parse(&bad),
            Err(CpioError::BadField {
                offset: 0,
                field: "filesize"
            })
        );
        // Every truncation before the trailer's name ends is an error, never a panic (the
        // trailer's own padding is optional).
        let trailer_name_end = good.len() - 124 + HEADER_LEN + TRAILER.len() + 1;
        for n in 0..trailer_name_end {
            assert!(Archive::parse(&good[..n]).is_err(), "prefix {n}");
        }
        assert!(Archive::parse(&good[..trailer_name_end]).is_ok());
        // Without a trailer.
        let no_trailer = &good[..good.len() - 124];
        assert_eq!(Archive::parse(no_trailer), Err(CpioError::NoTrailer));
    }

    #[test]
    fn random_bytes_never_panic() {
        let good = sample();
        let mut s: u64 = 7;
        for _ in 0..3000 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let mut b = good.clone();
            let i = (s as usize) % b.len();
            b[i] = (s >> 32) as u8;
            let _ = Archive::parse(&b);
            let cut = (s >> 16) as usize % b.len();
            let _ = Archive::parse(&b[..cut]);
        }
    }

    #[test]
    fn normalizes_paths() {
        assert_eq!(normalize("/etc/xen/"), "etc/xen");
        assert_eq!(normalize("./boot/x"), "boot/x");
        assert_eq!(normalize("/"), "");
        assert_eq!(normalize("."), "");
    }
}
