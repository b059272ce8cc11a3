//! Zip archives for tests: small ones built with the `zip` crate, and huge ones of
//! zeros deflated by hand.

use std::io::Write;

use zip::write::SimpleFileOptions;

/// One entry for [`make_zip`]: a file with its content and mode, a directory, or a
/// symlink to a target.
pub enum Entry<'a> {
    File(&'a [u8], u32),
    Dir,
    Symlink(&'a str),
}

/// A deflated zip of `items`, in memory.
pub fn make_zip(items: &[(&str, Entry<'_>)]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, entry) in items {
        let options =
            SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        match entry {
            Entry::File(bytes, mode) => {
                zip.start_file(*name, options.unix_permissions(*mode))
                    .unwrap();
                zip.write_all(bytes).unwrap();
            }
            Entry::Dir => zip.add_directory(*name, options).unwrap(),
            Entry::Symlink(target) => zip.add_symlink(*name, *target, options).unwrap(),
        }
    }
    zip.finish().unwrap().into_inner()
}

/// Packs bits least significant first, as deflate does.
#[derive(Default)]
struct Bits {
    out: Vec<u8>,
    acc: u64,
    len: u32,
}

impl Bits {
    fn push(&mut self, value: u64, bits: u32) {
        self.acc |= value << self.len;
        self.len += bits;
        while self.len >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.len -= 8;
        }
    }

    fn finish(mut self) -> Vec<u8> {
        if self.len > 0 {
            self.out.push(self.acc as u8);
        }
        self.out
    }
}

/// A one-entry zip whose entry is about `len` zero bytes, deflated by hand (one fixed
/// Huffman block: a literal zero, then matches of 258 bytes at distance 1), so a
/// gigabyte costs ~6 MiB and no compression time. The header claims `declared` bytes
/// (the true length if `None`) and `unix_mode`. The CRC is not computed (hashing
/// gigabytes in a debug build is slow): these archives are for extractions that must
/// stop before the end, where the CRC is checked.
pub fn zeros_zip(name: &str, len: u64, declared: Option<u32>, unix_mode: u32) -> Vec<u8> {
    let matches = len.saturating_sub(1) / 258;
    let true_len = 1 + 258 * matches;
    let mut bits = Bits::default();
    bits.push(0b011, 3); // last block, fixed Huffman
    bits.push(0b0000_1100, 8); // literal 0 (code 00110000, sent high bit first)
    for _ in 0..matches {
        // length 258 (code 285 = 11000101, high bit first) then distance 1 (code 00000)
        bits.push(0b1010_0011, 13);
    }
    bits.push(0, 7); // end of block
    let data = bits.finish();

    let compressed = u32::try_from(data.len()).unwrap();
    let size = declared.unwrap_or_else(|| u32::try_from(true_len).unwrap());
    let name_len = u16::try_from(name.len()).unwrap();
    let mut zip = Vec::with_capacity(data.len() + 200);
    // local file header
    zip.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
    zip.extend_from_slice(&20u16.to_le_bytes()); // version needed
    zip.extend_from_slice(&0u16.to_le_bytes()); // flags
    zip.extend_from_slice(&8u16.to_le_bytes()); // deflate
    zip.extend_from_slice(&0u16.to_le_bytes()); // time
    zip.extend_from_slice(&0x21u16.to_le_bytes()); // date 1980-01-01
    zip.extend_from_slice(&0u32.to_le_bytes()); // crc (not computed)
    zip.extend_from_slice(&compressed.to_le_bytes());
    zip.extend_from_slice(&size.to_le_bytes());
    zip.extend_from_slice(&name_len.to_le_bytes());
    zip.extend_from_slice(&0u16.to_le_bytes()); // extra
    zip.extend_from_slice(name.as_bytes());
    zip.extend_from_slice(&data);
    // central directory
    let cd_start = u32::try_from(zip.len()).unwrap();
    zip.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
    zip.extend_from_slice(&0x0314u16.to_le_bytes()); // made by unix, 2.0
    zip.extend_from_slice(&20u16.to_le_bytes());
    zip.extend_from_slice(&0u16.to_le_bytes());
    zip.extend_from_slice(&8u16.to_le_bytes());
    zip.extend_from_slice(&0u16.to_le_bytes());
    zip.extend_from_slice(&0x21u16.to_le_bytes());
    zip.extend_from_slice(&0u32.to_le_bytes());
    zip.extend_from_slice(&compressed.to_le_bytes());
    zip.extend_from_slice(&size.to_le_bytes());
    zip.extend_from_slice(&name_len.to_le_bytes());
    zip.extend_from_slice(&[0; 8]); // extra, comment, disk, internal attributes
    zip.extend_from_slice(&(unix_mode << 16).to_le_bytes());
    zip.extend_from_slice(&0u32.to_le_bytes()); // local header offset
    zip.extend_from_slice(name.as_bytes());
    let cd_len = u32::try_from(zip.len()).unwrap() - cd_start;
    // end of central directory
    zip.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    zip.extend_from_slice(&[0, 0, 0, 0, 1, 0, 1, 0]); // disks, one entry
    zip.extend_from_slice(&cd_len.to_le_bytes());
    zip.extend_from_slice(&cd_start.to_le_bytes());
    zip.extend_from_slice(&0u16.to_le_bytes());
    zip
}

/// The unix modes [`zeros_zip`] can give its entry: a regular file, a symlink.
pub const REGULAR: u32 = 0o100_644;
pub const SYMLINK: u32 = 0o120_777;
