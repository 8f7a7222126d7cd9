//! Decompressing a bzImage's payload into the vmlinux ELF it carries.

use std::io::{self, Read};

use liblzma::stream::Stream;

use crate::KernelError;
use crate::image::{Compression, KernelImage, LZ4_LEGACY_MAGIC, inspect};

/// The largest vmlinux extracted, and the largest kernel file read. A distribution kernel's
/// vmlinux is 50–70 MiB; the bound keeps a hostile image from exhausting memory.
pub const SIZE_LIMIT: usize = 512 << 20;

/// liblzma's memory limit: the kernel's xz uses a 32 MiB dictionary, its lzma (`-9`) 64 MiB.
const LZMA_MEMORY_LIMIT: u64 = 256 << 20;

/// What one block of the LZ4 legacy container decompresses to at most.
const LZ4_LEGACY_BLOCK_SIZE: usize = 8 << 20;

/// Decompresses the vmlinux ELF out of a bzImage.
pub fn extract_vmlinux(bytes: &[u8]) -> Result<Vec<u8>, KernelError> {
    match inspect(bytes)? {
        KernelImage::BzImage(bz_image) => decompress(bz_image.compression, bz_image.payload),
        _ => Err(KernelError::NotBzImage),
    }
}

pub(crate) fn decompress(compression: Compression, payload: &[u8]) -> Result<Vec<u8>, KernelError> {
    if !compression.is_extractable() {
        return Err(KernelError::Unsupported { compression });
    }
    // The kernel's build appends the uncompressed size to every payload (mkpiggy reads it
    // back); for gzip those 4 bytes are the gzip trailer's own ISIZE field.
    let Some((stream, size)) = payload.split_last_chunk::<4>() else {
        return Err(KernelError::BadBzImage { reason: "the payload is shorter than its size trailer" });
    };
    let declared = u32::from_le_bytes(*size) as usize;
    if declared > SIZE_LIMIT {
        return Err(KernelError::TooLarge { size: declared, limit: SIZE_LIMIT });
    }
    let vmlinux = match compression {
        Compression::Gzip => read_at_most(flate2::bufread::GzDecoder::new(payload), declared),
        Compression::Xz => Stream::new_stream_decoder(LZMA_MEMORY_LIMIT, 0)
            .map_err(io::Error::from)
            .and_then(|decoder| read_at_most(liblzma::bufread::XzDecoder::new_stream(stream, decoder), declared)),
        Compression::Lzma => Stream::new_lzma_decoder(LZMA_MEMORY_LIMIT)
            .map_err(io::Error::from)
            .and_then(|decoder| read_at_most(liblzma::bufread::XzDecoder::new_stream(stream, decoder), declared)),
        Compression::Bzip2 => read_at_most(bzip2::bufread::BzDecoder::new(stream), declared),
        // One shot, as the kernel does: a streaming decoder would need the frame's whole window
        // (128 MiB for the kernel's `zstd -22 --ultra`) on top of the output.
        Compression::Zstd => zstd::bulk::decompress(stream, declared),
        Compression::Lz4Legacy => lz4_legacy(stream, declared),
        Compression::Lzo | Compression::Unknown => return Err(KernelError::Unsupported { compression }),
    }
    .map_err(|source| KernelError::Decompress { compression, source })?;
    if vmlinux.len() != declared {
        return Err(KernelError::SizeMismatch { declared });
    }
    Ok(vmlinux)
}

/// Reads up to one byte more than `declared`, so a longer output is noticed without being stored.
fn read_at_most(decoder: impl Read, declared: usize) -> io::Result<Vec<u8>> {
    let mut vmlinux = Vec::with_capacity(declared);
    decoder.take(declared as u64 + 1).read_to_end(&mut vmlinux)?;
    Ok(vmlinux)
}

/// The legacy LZ4 container (`lz4 -l`, the kernel's lib/decompress_unlz4.c): the magic, then
/// blocks of [compressed length: u32 LE][LZ4 block], each decompressing to at most 8 MiB. The
/// magic may appear again between blocks, starting a concatenated stream.
fn lz4_legacy(stream: &[u8], declared: usize) -> io::Result<Vec<u8>> {
    let mut vmlinux = vec![0; declared];
    let mut written = 0;
    let mut rest = stream;
    while let Some((head, tail)) = rest.split_first_chunk::<4>() {
        rest = tail;
        if *head == LZ4_LEGACY_MAGIC {
            continue;
        }
        let length = u32::from_le_bytes(*head) as usize;
        let Some((block, tail)) = rest.split_at_checked(length) else {
            return Err(invalid_data(format!("a block of {length} bytes runs past the end of the payload")));
        };
        rest = tail;
        let room = declared.min(written + LZ4_LEGACY_BLOCK_SIZE);
        written += lz4_flex::block::decompress_into(block, &mut vmlinux[written..room]).map_err(invalid_data)?;
    }
    if !rest.is_empty() {
        return Err(invalid_data(format!("{} stray bytes after the last block", rest.len())));
    }
    vmlinux.truncate(written);
    Ok(vmlinux)
}

fn invalid_data(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{EXTRACTABLE, bzimage, compress, elf, lz4_legacy_blocks, with_size_trailer};

    fn vmlinux() -> Vec<u8> {
        let mut vmlinux = elf(Some(0x0100_0a20));
        vmlinux.extend((0..200_000u32).map(|i| (i % 251) as u8 ^ (i / 977) as u8));
        vmlinux
    }

    #[test]
    fn extracts_the_vmlinux_of_every_supported_compression() {
        let vmlinux = vmlinux();
        for compression in EXTRACTABLE {
            let image = bzimage(&compress(compression, &vmlinux));
            let extracted = extract_vmlinux(&image).unwrap_or_else(|err| panic!("{compression}: {err}"));
            assert!(extracted == vmlinux, "{compression}: extracted something else");
        }
    }

    #[test]
    fn lz4_blocks_and_a_repeated_magic_are_followed() {
        let vmlinux = vmlinux();
        let (first, second) = vmlinux.split_at(70_000);
        let mut stream = lz4_legacy_blocks(first, 30_000);
        stream.extend(lz4_legacy_blocks(second, 50_000));
        let image = bzimage(&with_size_trailer(stream, vmlinux.len()));
        assert!(extract_vmlinux(&image).unwrap() == vmlinux);
    }

    #[test]
    fn a_truncated_lz4_block_is_an_error() {
        let vmlinux = vmlinux();
        let mut stream = lz4_legacy_blocks(&vmlinux, 100_000);
        stream.truncate(stream.len() - 10);
        let image = bzimage(&with_size_trailer(stream.clone(), vmlinux.len()));
        assert!(matches!(extract_vmlinux(&image), Err(KernelError::Decompress { .. })));
        stream.extend([1, 2]);
        let image = bzimage(&with_size_trailer(stream, vmlinux.len()));
        assert!(matches!(extract_vmlinux(&image), Err(KernelError::Decompress { .. })));
    }

    #[test]
    fn an_lz4_block_larger_than_8_mib_is_refused() {
        let big = vec![7u8; LZ4_LEGACY_BLOCK_SIZE + 1];
        let image = bzimage(&with_size_trailer(lz4_legacy_blocks(&big, big.len()), big.len()));
        assert!(matches!(extract_vmlinux(&image), Err(KernelError::Decompress { .. })));
    }

    #[test]
    fn lzo_and_unknown_compressions_are_not_extractable() {
        for payload in [&[0x89, b'L', b'Z', b'O', 0, 0, 0, 0][..], b"\0\0\0\0\0\0\0\0"] {
            let image = bzimage(payload);
            assert!(matches!(extract_vmlinux(&image), Err(KernelError::Unsupported { .. })));
        }
    }

    #[test]
    fn a_wrong_size_trailer_is_an_error() {
        let vmlinux = vmlinux();
        for compression in EXTRACTABLE {
            let mut payload = compress(compression, &vmlinux);
            let at = payload.len() - 4;
            for declared in [vmlinux.len() - 1, vmlinux.len() + 1] {
                payload[at..].copy_from_slice(&(declared as u32).to_le_bytes());
                let result = extract_vmlinux(&bzimage(&payload));
                // gzip checks its own trailer; the others decode, then disagree with it.
                assert!(
                    matches!(result, Err(KernelError::SizeMismatch { .. } | KernelError::Decompress { .. })),
                    "{compression}, {declared}: {result:?}"
                );
            }
        }
    }

    #[test]
    fn a_size_over_the_limit_is_refused_before_decompressing() {
        let vmlinux = vmlinux();
        for compression in EXTRACTABLE {
            let mut payload = compress(compression, &vmlinux);
            let at = payload.len() - 4;
            payload[at..].copy_from_slice(&u32::MAX.to_le_bytes());
            let result = extract_vmlinux(&bzimage(&payload));
            assert!(matches!(result, Err(KernelError::TooLarge { .. })), "{compression}: {result:?}");
        }
    }

    #[test]
    fn damaged_payloads_are_errors_not_panics() {
        let vmlinux = vmlinux();
        for compression in EXTRACTABLE {
            let payload = compress(compression, &vmlinux);
            let mut flipped = payload.clone();
            let middle = flipped.len() / 2;
            flipped[middle..middle + 8].iter_mut().for_each(|byte| *byte ^= 0x5a);
            // lzma-alone and LZ4 carry no checksum: a flipped byte may decode to other bytes.
            let _ = extract_vmlinux(&bzimage(&flipped));
            let short = [&payload[..payload.len() / 2], &payload[payload.len() - 4..]].concat();
            assert!(extract_vmlinux(&bzimage(&short)).is_err(), "{compression}");
            for len in [0, 1, 3, 4, 5, 9, 17] {
                let _ = extract_vmlinux(&bzimage(&payload[..len.min(payload.len())]));
            }
        }
    }

    #[test]
    fn only_a_bzimage_has_a_payload() {
        assert!(matches!(extract_vmlinux(&elf(None)), Err(KernelError::NotBzImage)));
        assert!(matches!(extract_vmlinux(b"plain text"), Err(KernelError::NotBzImage)));
    }
}
