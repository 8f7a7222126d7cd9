//! Synthetic kernel images for the unit tests: hand-built ELF64 files and bzImages around them.

use std::io::Write;

use liblzma::stream::{Check, Filters, LzmaOptions, Stream};

use crate::Compression;
use crate::image::LZ4_LEGACY_MAGIC;

pub const EXTRACTABLE: [Compression; 6] = [
    Compression::Gzip,
    Compression::Xz,
    Compression::Lzma,
    Compression::Bzip2,
    Compression::Lz4Legacy,
    Compression::Zstd,
];

/// A minimal x86-64 ELF with a GNU build-id note and, when `pvh` is given, a PVH entry note
/// holding an 8-byte address as a 64-bit kernel's does.
pub fn elf(pvh: Option<u32>) -> Vec<u8> {
    let entry = pvh.map(u64::from).unwrap_or_default().to_le_bytes();
    let mut notes: Vec<(&[u8], u32, &[u8])> = vec![(b"GNU", 3, b"0123456789abcdefghij")];
    if pvh.is_some() {
        notes.push((b"Xen", 18, &entry));
    }
    elf_with_notes(&notes)
}

/// An ELF64 with one PT_NOTE segment holding `notes` as (name, type, value).
pub fn elf_with_notes(notes: &[(&[u8], u32, &[u8])]) -> Vec<u8> {
    const HEADER_SIZE: u16 = 64;
    const PHDR_SIZE: u16 = 56;
    let mut segment = Vec::new();
    for (name, kind, desc) in notes {
        segment.extend((name.len() as u32 + 1).to_le_bytes());
        segment.extend((desc.len() as u32).to_le_bytes());
        segment.extend(kind.to_le_bytes());
        segment.extend(*name);
        segment.push(0);
        pad_to_4(&mut segment);
        segment.extend(*desc);
        pad_to_4(&mut segment);
    }
    let notes_at = u64::from(HEADER_SIZE + PHDR_SIZE);

    let mut elf = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0".to_vec(); // 64-bit, little-endian, version 1
    elf.extend(2u16.to_le_bytes()); // e_type: ET_EXEC
    elf.extend(62u16.to_le_bytes()); // e_machine: EM_X86_64
    elf.extend(1u32.to_le_bytes()); // e_version
    elf.extend(0x0100_0000u64.to_le_bytes()); // e_entry
    elf.extend(u64::from(HEADER_SIZE).to_le_bytes()); // e_phoff
    elf.extend(0u64.to_le_bytes()); // e_shoff: no section headers, as in a stripped vmlinux
    elf.extend(0u32.to_le_bytes()); // e_flags
    elf.extend(HEADER_SIZE.to_le_bytes()); // e_ehsize
    elf.extend(PHDR_SIZE.to_le_bytes()); // e_phentsize
    elf.extend(1u16.to_le_bytes()); // e_phnum
    elf.extend(64u16.to_le_bytes()); // e_shentsize
    elf.extend(0u16.to_le_bytes()); // e_shnum
    elf.extend(0u16.to_le_bytes()); // e_shstrndx

    elf.extend(4u32.to_le_bytes()); // p_type: PT_NOTE
    elf.extend(4u32.to_le_bytes()); // p_flags: PF_R
    elf.extend(notes_at.to_le_bytes()); // p_offset
    elf.extend(notes_at.to_le_bytes()); // p_vaddr
    elf.extend(notes_at.to_le_bytes()); // p_paddr
    elf.extend((segment.len() as u64).to_le_bytes()); // p_filesz
    elf.extend((segment.len() as u64).to_le_bytes()); // p_memsz
    elf.extend(4u64.to_le_bytes()); // p_align
    elf.extend(segment);
    elf
}

fn pad_to_4(bytes: &mut Vec<u8>) {
    bytes.resize(bytes.len().next_multiple_of(4), 0);
}

/// A bzImage (boot protocol 2.15, 1 setup sector) whose payload is `payload`, ending the file.
pub fn bzimage(payload: &[u8]) -> Vec<u8> {
    const PAYLOAD_OFFSET: u32 = 16;
    let mut image = vec![0u8; 2 * 512 + PAYLOAD_OFFSET as usize];
    image[0x1f1] = 1; // setup_sects
    image[0x1fe..0x200].copy_from_slice(&[0x55, 0xaa]);
    image[0x202..0x206].copy_from_slice(b"HdrS");
    image[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
    image[0x248..0x24c].copy_from_slice(&PAYLOAD_OFFSET.to_le_bytes());
    image[0x24c..0x250].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    image.extend_from_slice(payload);
    image
}

/// `data` compressed as the kernel's build does it: the stream, then the size trailer.
pub fn compress(compression: Compression, data: &[u8]) -> Vec<u8> {
    let stream = match compression {
        // gzip's own trailer ends with the size: the build appends nothing.
        Compression::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            encoder.write_all(data).unwrap();
            return encoder.finish().unwrap();
        }
        Compression::Xz => {
            // As scripts/xz_wrap.sh does for x86: the BCJ filter, then LZMA2, with a CRC32 check.
            let mut filters = Filters::new();
            filters.x86().lzma2(&LzmaOptions::new_preset(6).unwrap());
            xz_encode(Stream::new_stream_encoder(&filters, Check::Crc32).unwrap(), data)
        }
        Compression::Lzma => xz_encode(Stream::new_lzma_encoder(&LzmaOptions::new_preset(6).unwrap()).unwrap(), data),
        Compression::Bzip2 => {
            let mut encoder = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::best());
            encoder.write_all(data).unwrap();
            encoder.finish().unwrap()
        }
        Compression::Lz4Legacy => lz4_legacy_blocks(data, 8 << 20),
        // A streaming encoder, as the kernel's `zstd -22 --ultra` reading a pipe: no content size.
        Compression::Zstd => zstd::stream::encode_all(data, 3).unwrap(),
        Compression::Lzo => [&[0x89, b'L', b'Z', b'O', 0, 0x0d, 0x0a, 0x1a, 0x0a][..], data].concat(),
        Compression::Unknown => data.to_vec(),
    };
    with_size_trailer(stream, data.len())
}

fn xz_encode(stream: Stream, data: &[u8]) -> Vec<u8> {
    let mut encoder = liblzma::write::XzEncoder::new_stream(Vec::new(), stream);
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// The LZ4 legacy container (`lz4 -l`) with blocks of `block_size` uncompressed bytes.
pub fn lz4_legacy_blocks(data: &[u8], block_size: usize) -> Vec<u8> {
    let mut stream = LZ4_LEGACY_MAGIC.to_vec();
    for chunk in data.chunks(block_size) {
        let block = lz4_flex::block::compress(chunk);
        stream.extend((block.len() as u32).to_le_bytes());
        stream.extend(block);
    }
    stream
}

pub fn with_size_trailer(mut stream: Vec<u8>, size: usize) -> Vec<u8> {
    stream.extend((size as u32).to_le_bytes());
    stream
}
