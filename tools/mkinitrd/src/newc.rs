//! The cpio "newc" format (magic `070701`): a 110-byte ASCII-hex header per entry, the
//! NUL-terminated name, padding to 4 bytes, the data, padding to 4 bytes; the archive ends
//! with the entry `TRAILER!!!`. Entries here are directories (mode 040755) and regular files
//! (0100644), owned by root, with fixed timestamps so that builds are reproducible.

use std::collections::BTreeMap;
use std::path::Path;

/// `c_mode` of a directory.
pub const MODE_DIR: u32 = 0o040_755;
/// `c_mode` of a regular file.
pub const MODE_FILE: u32 = 0o100_644;
/// The header magic.
pub const MAGIC: &[u8; 6] = b"070701";
/// Name of the last entry.
pub const TRAILER: &str = "TRAILER!!!";

/// What an archive path names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    /// A directory.
    Dir,
    /// A file and its contents.
    File(Vec<u8>),
}

/// The archive's entries by path (no leading `/`), parents before children.
#[derive(Default, Debug)]
pub struct Tree {
    nodes: BTreeMap<String, Node>,
}

/// Normalises an archive path: no leading `/`, no empty, `.` or `..` components.
pub fn clean_name(name: &str) -> Result<String, String> {
    let parts: Vec<&str> = name.split('/').filter(|p| !p.is_empty()).collect();
    if parts.is_empty() || parts.iter().any(|p| *p == "." || *p == "..") {
        return Err(format!("bad archive name '{name}'"));
    }
    Ok(parts.join("/"))
}

impl Tree {
    /// Number of entries (without the trailer).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Adds `name`'s parent directories.
    fn add_parents(&mut self, name: &str) -> Result<(), String> {
        let mut at = 0;
        while let Some(i) = name[at..].find('/') {
            let dir = &name[..at + i];
            match self.nodes.get(dir) {
                Some(Node::File(_)) => return Err(format!("'{dir}' is a file and a directory")),
                Some(Node::Dir) => {}
                None => {
                    self.nodes.insert(dir.to_string(), Node::Dir);
                }
            }
            at += i + 1;
        }
        Ok(())
    }

    /// Adds (or replaces) the file `name` with `data`, and its parent directories.
    pub fn add_file(&mut self, name: &str, data: Vec<u8>) -> Result<(), String> {
        let name = clean_name(name)?;
        if matches!(self.nodes.get(&name), Some(Node::Dir)) {
            return Err(format!("'{name}' is a directory"));
        }
        self.add_parents(&name)?;
        self.nodes.insert(name, Node::File(data));
        Ok(())
    }

    /// Adds the directory `name` and its parents.
    pub fn add_dir(&mut self, name: &str) -> Result<(), String> {
        let name = clean_name(name)?;
        if matches!(self.nodes.get(&name), Some(Node::File(_))) {
            return Err(format!("'{name}' is a file"));
        }
        self.add_parents(&name)?;
        self.nodes.insert(name, Node::Dir);
        Ok(())
    }

    /// Adds everything below the host directory `root` (not `root` itself), following
    /// neither symlinks nor special files (refused).
    pub fn add_dir_tree(&mut self, root: &Path) -> Result<(), String> {
        self.walk(root, "")
    }

    fn walk(&mut self, dir: &Path, prefix: &str) -> Result<(), String> {
        let rd = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut entries: Vec<_> = rd
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let fname = e.file_name();
            let fname = fname
                .to_str()
                .ok_or_else(|| format!("{}: name is not UTF-8", e.path().display()))?;
            let name = format!("{prefix}{fname}");
            let ft = e
                .file_type()
                .map_err(|err| format!("{}: {err}", e.path().display()))?;
            if ft.is_dir() {
                self.add_dir(&name)?;
                self.walk(&e.path(), &format!("{name}/"))?;
            } else if ft.is_file() {
                let data = std::fs::read(e.path())
                    .map_err(|err| format!("{}: {err}", e.path().display()))?;
                self.add_file(&name, data)?;
            } else {
                return Err(format!("{}: not a file or directory", e.path().display()));
            }
        }
        Ok(())
    }

    /// The archive bytes: every entry in path order (parents first), then the trailer.
    pub fn archive(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, (name, node)) in self.nodes.iter().enumerate() {
            let (mode, nlink, data): (u32, u32, &[u8]) = match node {
                Node::Dir => (MODE_DIR, 2, &[]),
                Node::File(d) => (MODE_FILE, 1, d),
            };
            entry(&mut out, i as u32 + 1, name, mode, nlink, data);
        }
        entry(&mut out, 0, TRAILER, 0, 1, &[]);
        out
    }
}

/// Appends one entry.
fn entry(out: &mut Vec<u8>, ino: u32, name: &str, mode: u32, nlink: u32, data: &[u8]) {
    let fields = [
        ino,
        mode,
        0, // uid
        0, // gid
        nlink,
        0, // mtime
        data.len() as u32,
        0, // devmajor
        0, // devminor
        0, // rdevmajor
        0, // rdevminor
        name.len() as u32 + 1,
        0, // check
    ];
    out.extend_from_slice(MAGIC);
    for f in fields {
        out.extend_from_slice(format!("{f:08X}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

#[cfg(test)]
mod tests;
