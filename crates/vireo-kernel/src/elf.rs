//! The PVH entry point of a vmlinux ELF, as QEMU finds it.

use object::elf::{FileHeader32, FileHeader64, NoteType};
use object::read::elf::{FileHeader, ProgramHeader};
use object::{Endianness, FileKind};

use crate::KernelError;

/// Xen's note type XEN_ELFNOTE_PHYS32_ENTRY: the 32-bit physical address a PVH boot enters at.
const XEN_ELFNOTE_PHYS32_ENTRY: NoteType = NoteType(18);

/// The PVH entry address of an ELF kernel: `None` when it has no "Xen" note of type 18.
///
/// Like QEMU, this looks only at the notes of PT_NOTE segments, not at section headers (a
/// stripped vmlinux keeps the former).
pub fn pvh_entry(elf: &[u8]) -> Result<Option<u32>, KernelError> {
    match FileKind::parse(elf) {
        Ok(FileKind::Elf64) => find_pvh_note::<FileHeader64<Endianness>>(elf),
        Ok(FileKind::Elf32) => find_pvh_note::<FileHeader32<Endianness>>(elf),
        _ => Err(KernelError::NotElf),
    }
}

fn find_pvh_note<Elf: FileHeader<Endian = Endianness>>(data: &[u8]) -> Result<Option<u32>, KernelError> {
    let header = Elf::parse(data)?;
    let endian = header.endian()?;
    for segment in header.program_headers(endian, data)? {
        let Some(mut notes) = segment.notes(endian, data)? else { continue };
        while let Some(note) = notes.next()? {
            if note.name() == b"Xen" && note.n_type(endian) == XEN_ELFNOTE_PHYS32_ENTRY {
                return entry_address(note.desc(), endian).map(Some);
            }
        }
    }
    Ok(None)
}

/// The note holds an address-sized word (`_ASM_PTR`: 8 bytes in a 64-bit kernel, 4 in a 32-bit one).
fn entry_address(desc: &[u8], endian: Endianness) -> Result<u32, KernelError> {
    let little = endian == Endianness::Little;
    let address = match *desc {
        [a, b, c, d] if little => u64::from(u32::from_le_bytes([a, b, c, d])),
        [a, b, c, d] => u64::from(u32::from_be_bytes([a, b, c, d])),
        [a, b, c, d, e, f, g, h] if little => u64::from_le_bytes([a, b, c, d, e, f, g, h]),
        [a, b, c, d, e, f, g, h] => u64::from_be_bytes([a, b, c, d, e, f, g, h]),
        _ => return Err(KernelError::BadPvhNote { reason: "its value is neither 4 nor 8 bytes long" }),
    };
    u32::try_from(address).map_err(|_| KernelError::BadPvhNote { reason: "its address is above 4 GiB" })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{elf, elf_with_notes};

    #[test]
    fn finds_the_entry_of_a_xen_type_18_note() {
        assert_eq!(pvh_entry(&elf(Some(0x0100_0a20))).unwrap(), Some(0x0100_0a20));
    }

    #[test]
    fn a_four_byte_note_is_read_too() {
        let image = elf_with_notes(&[(b"Xen", 18, &0x0100_0a20u32.to_le_bytes())]);
        assert_eq!(pvh_entry(&image).unwrap(), Some(0x0100_0a20));
    }

    #[test]
    fn other_notes_are_skipped() {
        let image = elf_with_notes(&[
            (b"GNU", 3, b"build-id-bytes"),
            (b"Xen", 17, &7u64.to_le_bytes()),
            (b"Linux", 18, &1u64.to_le_bytes()),
            (b"Xen", 18, &0x0200_0000u64.to_le_bytes()),
        ]);
        assert_eq!(pvh_entry(&image).unwrap(), Some(0x0200_0000));
    }

    #[test]
    fn an_elf_without_the_note_has_no_pvh_entry() {
        assert_eq!(pvh_entry(&elf(None)).unwrap(), None);
        assert_eq!(pvh_entry(&elf_with_notes(&[])).unwrap(), None);
    }

    #[test]
    fn a_malformed_note_value_is_an_error() {
        for desc in [&[1u8, 2, 3][..], &[0u8; 16], &(1u64 << 32).to_le_bytes()] {
            let image = elf_with_notes(&[(b"Xen", 18, desc)]);
            assert!(matches!(pvh_entry(&image), Err(KernelError::BadPvhNote { .. })), "{desc:?}");
        }
    }

    #[test]
    fn not_an_elf_is_an_error() {
        for bytes in [&b""[..], b"\x7fELF", b"MZ\x90\x00", &[0u8; 128]] {
            assert!(pvh_entry(bytes).is_err(), "{bytes:?}");
        }
    }

    #[test]
    fn damaged_elves_are_errors_not_panics() {
        let image = elf(Some(0x0100_0a20));
        for len in 0..image.len() {
            assert!(pvh_entry(&image[..len]).is_err(), "prefix of {len} bytes");
        }
        // Every byte of the headers and the note set to extreme values.
        for at in 0..image.len() {
            for value in [0x00, 0x7f, 0x80, 0xff] {
                let mut damaged = image.clone();
                damaged[at] = value;
                let _ = pvh_entry(&damaged);
            }
        }
    }
}
