//! What kind of kernel file a byte slice is, and where a bzImage keeps its compressed vmlinux.

use std::fmt;

use crate::KernelError;

/// A kernel file, classified by its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelImage<'a> {
    /// An x86 bzImage whose header says where its compressed vmlinux is.
    BzImage(BzImage<'a>),
    /// An x86 bzImage older than boot protocol 2.08, which has no payload fields.
    OldBzImage { protocol: u16 },
    /// An ELF file: already a vmlinux.
    Elf,
    /// Anything else (QEMU may still know it: multiboot, a raw binary...).
    Unknown,
}

/// The compressed vmlinux inside a bzImage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BzImage<'a> {
    /// Boot protocol version, major in the high byte (0x020f is 2.15).
    pub protocol: u16,
    pub compression: Compression,
    /// The payload as the kernel's build wrote it: the compressed stream, then the uncompressed
    /// size as a little-endian u32 (for gzip that is the gzip trailer's ISIZE field).
    pub payload: &'a [u8],
}

/// How a bzImage's payload is compressed, recognised by its magic bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Xz,
    Lzma,
    Bzip2,
    /// LZ4 in the legacy container (`lz4 -l`), not the LZ4 frame format.
    Lz4Legacy,
    Zstd,
    Lzo,
    Unknown,
}

impl Compression {
    /// Whether [`crate::extract_vmlinux`] can decompress this payload.
    pub fn is_extractable(self) -> bool {
        !matches!(self, Compression::Lzo | Compression::Unknown)
    }

    fn detect(payload: &[u8]) -> Compression {
        const MAGICS: [(&[u8], Compression); 7] = [
            (&[0x1f, 0x8b], Compression::Gzip),
            (&[0xfd, b'7', b'z', b'X', b'Z', 0x00], Compression::Xz),
            (&[0x5d, 0x00, 0x00], Compression::Lzma),
            (b"BZh", Compression::Bzip2),
            (&LZ4_LEGACY_MAGIC, Compression::Lz4Legacy),
            (&[0x28, 0xb5, 0x2f, 0xfd], Compression::Zstd),
            (&[0x89, b'L', b'Z', b'O'], Compression::Lzo),
        ];
        MAGICS.iter().find(|(magic, _)| payload.starts_with(magic)).map_or(Compression::Unknown, |&(_, c)| c)
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::Gzip => "gzip",
            Compression::Xz => "xz",
            Compression::Lzma => "lzma",
            Compression::Bzip2 => "bzip2",
            Compression::Lz4Legacy => "lz4 (legacy)",
            Compression::Zstd => "zstd",
            Compression::Lzo => "lzo",
            Compression::Unknown => "an unknown compression",
        })
    }
}

pub(crate) const LZ4_LEGACY_MAGIC: [u8; 4] = [0x02, 0x21, 0x4c, 0x18];

const ELF_MAGIC: &[u8] = b"\x7fELF";

// Offsets in the x86 boot protocol header (Documentation/arch/x86/boot.rst).
const SETUP_SECTS: usize = 0x1f1;
const HEADER_MAGIC: usize = 0x202;
const VERSION: usize = 0x206;
const PAYLOAD_OFFSET: usize = 0x248;
const PAYLOAD_LENGTH: usize = 0x24c;
/// payload_offset and payload_length appeared in boot protocol 2.08.
const PAYLOAD_FIELDS_SINCE: u16 = 0x0208;

/// Classifies a kernel file. Fails only for a bzImage whose header points outside the file.
pub fn inspect(bytes: &[u8]) -> Result<KernelImage<'_>, KernelError> {
    if bytes.starts_with(ELF_MAGIC) {
        return Ok(KernelImage::Elf);
    }
    if bytes.get(HEADER_MAGIC..HEADER_MAGIC + 4) != Some(b"HdrS") {
        return Ok(KernelImage::Unknown);
    }
    let protocol = read_u16(bytes, VERSION).ok_or(damaged("the header ends before its version"))?;
    if protocol < PAYLOAD_FIELDS_SINCE {
        return Ok(KernelImage::OldBzImage { protocol });
    }
    let payload = payload(bytes)?;
    Ok(KernelImage::BzImage(BzImage { protocol, compression: Compression::detect(payload), payload }))
}

fn payload(bytes: &[u8]) -> Result<&[u8], KernelError> {
    let fields = read_u32(bytes, PAYLOAD_OFFSET).zip(read_u32(bytes, PAYLOAD_LENGTH));
    let (offset, length) = fields.ok_or(damaged("the header ends before its payload fields"))?;
    // The protected-mode code, whose start the payload offset counts from, follows the
    // boot sector and the setup sectors; 0 setup sectors means 4 (boot protocol).
    let setup_sects = match bytes.get(SETUP_SECTS).copied().unwrap_or_default() {
        0 => 4,
        n => usize::from(n),
    };
    let start = ((setup_sects + 1) * 512).checked_add(offset as usize);
    start
        .and_then(|start| bytes.get(start..start.checked_add(length as usize)?))
        .ok_or(damaged("the payload lies beyond the end of the file"))
}

fn damaged(reason: &'static str) -> KernelError {
    KernelError::BadBzImage { reason }
}

fn read_u16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(*bytes.get(at..)?.first_chunk()?))
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(*bytes.get(at..)?.first_chunk()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{bzimage, compress, elf};

    #[test]
    fn recognises_each_compression_by_its_magic() {
        let cases = [
            (Compression::Gzip, &[0x1f, 0x8b, 0x08][..]),
            (Compression::Xz, &[0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 0x00]),
            (Compression::Lzma, &[0x5d, 0x00, 0x00, 0x80]),
            (Compression::Bzip2, b"BZh9"),
            (Compression::Lz4Legacy, &[0x02, 0x21, 0x4c, 0x18, 0x10]),
            (Compression::Zstd, &[0x28, 0xb5, 0x2f, 0xfd, 0x04]),
            (Compression::Lzo, &[0x89, 0x4c, 0x5a, 0x4f, 0x00]),
            (Compression::Unknown, &[0x00, 0x01, 0x02, 0x03]),
            (Compression::Unknown, &[]),
        ];
        for (expected, payload) in cases {
            let image = bzimage(payload);
            let Ok(KernelImage::BzImage(found)) = inspect(&image) else { panic!("{expected:?}: not a bzImage") };
            assert_eq!(found.compression, expected);
            assert_eq!(found.payload, payload);
            assert_eq!(found.protocol, 0x020f);
        }
    }

    #[test]
    fn recognises_an_elf_and_unknown_files() {
        assert_eq!(inspect(&elf(Some(0x100_0000))).unwrap(), KernelImage::Elf);
        assert_eq!(inspect(b"").unwrap(), KernelImage::Unknown);
        assert_eq!(inspect(b"\x7fEL").unwrap(), KernelImage::Unknown);
        assert_eq!(inspect(&[0u8; 4096]).unwrap(), KernelImage::Unknown);
        // The magic with nothing after it: too short to hold "HdrS" at 0x202.
        assert_eq!(inspect(&[0u8; 0x204]).unwrap(), KernelImage::Unknown);
    }

    #[test]
    fn zero_setup_sectors_means_four() {
        let payload = compress(Compression::Gzip, b"vmlinux");
        let mut image = vec![0u8; 5 * 512];
        image[0x1fe..0x200].copy_from_slice(&[0x55, 0xaa]);
        image[0x202..0x206].copy_from_slice(b"HdrS");
        image[0x206..0x208].copy_from_slice(&0x020cu16.to_le_bytes());
        image[0x248..0x24c].copy_from_slice(&0u32.to_le_bytes());
        image[0x24c..0x250].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        image.extend_from_slice(&payload);
        let Ok(KernelImage::BzImage(found)) = inspect(&image) else { panic!("not a bzImage") };
        assert_eq!(found.payload, payload);
    }

    #[test]
    fn an_old_boot_protocol_has_no_payload_fields() {
        let mut image = bzimage(b"payload");
        image[0x206..0x208].copy_from_slice(&0x0207u16.to_le_bytes());
        assert_eq!(inspect(&image).unwrap(), KernelImage::OldBzImage { protocol: 0x0207 });
    }

    #[test]
    fn a_payload_outside_the_file_is_an_error() {
        let image = bzimage(b"payload");
        let mut too_long = image.clone();
        too_long[0x24c..0x250].copy_from_slice(&(u32::MAX).to_le_bytes());
        let mut too_far = image.clone();
        too_far[0x248..0x24c].copy_from_slice(&(u32::MAX).to_le_bytes());
        for broken in [too_long, too_far, image[..image.len() - 1].to_vec(), image[..0x24e].to_vec()] {
            assert!(matches!(inspect(&broken), Err(KernelError::BadBzImage { .. })), "{:?}", inspect(&broken));
        }
    }

    #[test]
    fn no_prefix_of_a_bzimage_panics() {
        let image = bzimage(&compress(Compression::Gzip, &elf(Some(0x100_0000))));
        for len in 0..image.len() {
            let _ = inspect(&image[..len]);
        }
    }
}
