//! Round trips through an independent reader written from the newc specification
//! (`cpio(5)`: 6-byte magic, 13 eight-digit hex fields, name and data each padded so that
//! the next item starts on a multiple of 4).

use super::*;

#[derive(Debug, PartialEq)]
struct Entry {
    name: String,
    mode: u32,
    nlink: u32,
    data: Vec<u8>,
}

fn hex(b: &[u8]) -> u32 {
    u32::from_str_radix(std::str::from_utf8(b).unwrap(), 16).unwrap()
}

fn read(mut a: &[u8]) -> Vec<Entry> {
    let total = a.len();
    let mut v = Vec::new();
    loop {
        let at = total - a.len();
        assert_eq!(at % 4, 0, "header at {at} not 4-aligned");
        assert_eq!(&a[..6], b"070701");
        let f = |i: usize| hex(&a[6 + 8 * i..14 + 8 * i]);
        let (mode, nlink, size, namesize) = (f(1), f(4), f(6) as usize, f(11) as usize);
        assert_eq!(f(12), 0, "check field of newc is zero");
        let name_end = 110 + namesize;
        assert_eq!(a[name_end - 1], 0, "name NUL-terminated");
        let name = std::str::from_utf8(&a[110..name_end - 1])
            .unwrap()
            .to_string();
        let data_start = name_end.next_multiple_of(4);
        let data = a[data_start..data_start + size].to_vec();
        a = &a[(data_start + size).next_multiple_of(4)..];
        if name == TRAILER {
            assert!(a.is_empty(), "nothing after the trailer");
            return v;
        }
        v.push(Entry {
            name,
            mode,
            nlink,
            data,
        });
    }
}

#[test]
fn files_and_parents_round_trip() {
    let mut t = Tree::default();
    t.add_file("/boot/demo.elf", vec![1, 2, 3, 4, 5]).unwrap();
    t.add_file("etc/xen/demo1.cfg", b"name = \"demo1\"\n".to_vec())
        .unwrap();
    t.add_file("x", vec![]).unwrap();
    let v = read(&t.archive());
    let names: Vec<&str> = v.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "boot",
            "boot/demo.elf",
            "etc",
            "etc/xen",
            "etc/xen/demo1.cfg",
            "x"
        ]
    );
    assert_eq!(v[0].mode, MODE_DIR);
    assert_eq!(v[0].nlink, 2);
    assert_eq!(v[1].mode, MODE_FILE);
    assert_eq!(v[1].data, [1, 2, 3, 4, 5]);
    assert_eq!(v[4].data, b"name = \"demo1\"\n");
    assert!(v[5].data.is_empty());
}

#[test]
fn every_name_and_data_length_pads_correctly() {
    for n in 1..9 {
        for d in 0..9 {
            let mut t = Tree::default();
            let name = "n".repeat(n);
            t.add_file(&name, vec![0xAB; d]).unwrap();
            let v = read(&t.archive());
            assert_eq!(v.len(), 1);
            assert_eq!(v[0].name, name);
            assert_eq!(v[0].data, vec![0xAB; d]);
        }
    }
}

#[test]
fn bad_names_and_kind_clashes_are_refused() {
    let mut t = Tree::default();
    assert!(t.add_file("", vec![]).is_err());
    assert!(t.add_file("a/../b", vec![]).is_err());
    assert!(t.add_file("./a", vec![]).is_err());
    t.add_file("a", vec![1]).unwrap();
    assert!(t.add_file("a/b", vec![]).is_err());
    assert!(t.add_dir("a").is_err());
    t.add_dir("d").unwrap();
    assert!(t.add_file("d", vec![]).is_err());
    // Replacing a file keeps one entry.
    t.add_file("a", vec![2]).unwrap();
    let v = read(&t.archive());
    assert_eq!(v.iter().filter(|e| e.name == "a").count(), 1);
    assert_eq!(v.iter().find(|e| e.name == "a").unwrap().data, [2]);
}

#[test]
fn directory_trees_are_read_in_name_order() {
    let dir = std::env::temp_dir().join(format!("mkinitrd-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("etc/xen")).unwrap();
    std::fs::create_dir_all(dir.join("empty")).unwrap();
    std::fs::write(dir.join("etc/xen/b.cfg"), "b").unwrap();
    std::fs::write(dir.join("etc/xen/a.cfg"), "a").unwrap();
    let mut t = Tree::default();
    t.add_dir_tree(&dir).unwrap();
    t.add_file("boot/k.elf", vec![7]).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let v = read(&t.archive());
    let names: Vec<&str> = v.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "boot",
            "boot/k.elf",
            "empty",
            "etc",
            "etc/xen",
            "etc/xen/a.cfg",
            "etc/xen/b.cfg"
        ]
    );
    assert_eq!(v[5].data, b"a");
}
