//! The decision: which entry of a kernel image boots fastest.

use std::fmt;

use crate::extract::decompress;
use crate::image::{Compression, KernelImage, inspect};
use crate::{KernelError, pvh_entry};

/// How QEMU should be given a kernel image.
#[derive(Debug, PartialEq, Eq)]
pub enum Entry {
    /// The image is itself an ELF with a PVH note: QEMU boots the file as given, through PVH.
    PvhAsGiven { entry: u32 },
    /// The image is a bzImage whose vmlinux has a PVH note: QEMU boots `vmlinux` through PVH.
    PvhExtracted { entry: u32, vmlinux: Vec<u8> },
    /// QEMU boots the image as given (a bzImage through the Linux boot protocol).
    AsGiven(AsGivenReason),
}

/// Why an image is booted as given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AsGivenReason {
    /// Neither a bzImage nor an ELF.
    UnknownFormat,
    /// An ELF without a PVH note (QEMU boots such an ELF only if it is a multiboot kernel).
    ElfWithoutPvhNote,
    /// A bzImage older than boot protocol 2.08, which does not say where its payload is.
    OldBootProtocol { protocol: u16 },
    /// A bzImage whose payload this crate cannot decompress.
    NotExtractable { compression: Compression },
    /// A bzImage whose vmlinux has no PVH note.
    NoPvhNote,
}

impl fmt::Display for AsGivenReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AsGivenReason::UnknownFormat => f.write_str("neither a bzImage nor an ELF"),
            AsGivenReason::ElfWithoutPvhNote => f.write_str("an ELF without a PVH note"),
            AsGivenReason::OldBootProtocol { protocol } => {
                write!(f, "a bzImage of boot protocol {}.{:02}, older than 2.08", protocol >> 8, protocol & 0xff)
            }
            AsGivenReason::NotExtractable { compression } => write!(f, "a bzImage compressed with {compression}"),
            AsGivenReason::NoPvhNote => f.write_str("a bzImage whose vmlinux has no PVH note"),
        }
    }
}

/// Chooses the fastest entry of a kernel image, decompressing a bzImage's vmlinux to look for
/// its PVH note. Fails when the image is damaged: a header pointing outside the file, a
/// payload that does not decompress, a vmlinux that is not an ELF.
pub fn choose_entry(bytes: &[u8]) -> Result<Entry, KernelError> {
    let bz_image = match inspect(bytes)? {
        KernelImage::BzImage(bz_image) => bz_image,
        KernelImage::Elf => {
            return Ok(match pvh_entry(bytes)? {
                Some(entry) => Entry::PvhAsGiven { entry },
                None => Entry::AsGiven(AsGivenReason::ElfWithoutPvhNote),
            });
        }
        KernelImage::OldBzImage { protocol } => return Ok(Entry::AsGiven(AsGivenReason::OldBootProtocol { protocol })),
        KernelImage::Unknown => return Ok(Entry::AsGiven(AsGivenReason::UnknownFormat)),
    };
    let compression = bz_image.compression;
    if !compression.is_extractable() {
        return Ok(Entry::AsGiven(AsGivenReason::NotExtractable { compression }));
    }
    let vmlinux = decompress(compression, bz_image.payload)?;
    Ok(match pvh_entry(&vmlinux)? {
        Some(entry) => Entry::PvhExtracted { entry, vmlinux },
        None => Entry::AsGiven(AsGivenReason::NoPvhNote),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{EXTRACTABLE, bzimage, compress, elf};

    #[test]
    fn a_bzimage_with_a_pvh_vmlinux_boots_the_extracted_vmlinux() {
        let vmlinux = elf(Some(0x0100_0a20));
        for compression in EXTRACTABLE {
            let entry = choose_entry(&bzimage(&compress(compression, &vmlinux))).unwrap();
            assert_eq!(entry, Entry::PvhExtracted { entry: 0x0100_0a20, vmlinux: vmlinux.clone() }, "{compression}");
        }
    }

    #[test]
    fn a_bzimage_without_a_pvh_note_boots_as_given() {
        let image = bzimage(&compress(Compression::Zstd, &elf(None)));
        assert_eq!(choose_entry(&image).unwrap(), Entry::AsGiven(AsGivenReason::NoPvhNote));
    }

    #[test]
    fn an_elf_with_a_pvh_note_boots_itself_through_pvh() {
        assert_eq!(choose_entry(&elf(Some(0x0100_0a20))).unwrap(), Entry::PvhAsGiven { entry: 0x0100_0a20 });
        assert_eq!(choose_entry(&elf(None)).unwrap(), Entry::AsGiven(AsGivenReason::ElfWithoutPvhNote));
    }

    #[test]
    fn what_cannot_be_extracted_boots_as_given() {
        let lzo = bzimage(&compress(Compression::Lzo, &elf(Some(1))));
        let expected = AsGivenReason::NotExtractable { compression: Compression::Lzo };
        assert_eq!(choose_entry(&lzo).unwrap(), Entry::AsGiven(expected));

        let mut old = bzimage(&compress(Compression::Gzip, &elf(Some(1))));
        old[0x206..0x208].copy_from_slice(&0x0206u16.to_le_bytes());
        assert_eq!(choose_entry(&old).unwrap(), Entry::AsGiven(AsGivenReason::OldBootProtocol { protocol: 0x0206 }));
        assert!(AsGivenReason::OldBootProtocol { protocol: 0x0206 }.to_string().contains("2.06"));

        assert_eq!(choose_entry(b"#!/bin/sh\n").unwrap(), Entry::AsGiven(AsGivenReason::UnknownFormat));
    }

    #[test]
    fn a_payload_that_is_not_an_elf_is_an_error() {
        let image = bzimage(&compress(Compression::Gzip, b"not an ELF at all"));
        assert!(matches!(choose_entry(&image), Err(KernelError::NotElf)));
    }

    #[test]
    fn no_prefix_or_damage_of_an_image_panics() {
        let image = bzimage(&compress(Compression::Lz4Legacy, &elf(Some(0x0100_0a20))));
        for len in 0..image.len() {
            let _ = choose_entry(&image[..len]);
        }
        for at in 0x1f0..image.len() {
            let mut damaged = image.clone();
            damaged[at] ^= 0xff;
            let _ = choose_entry(&damaged);
        }
    }
}
