//! Vireo's kernel images: which entry of a Linux kernel boots fastest, and a cache that makes
//! finding it cheap.
//!
//! QEMU boots an ELF vmlinux through its PVH entry (the Xen note XEN_ELFNOTE_PHYS32_ENTRY)
//! straight into the kernel, skipping the bzImage's real-mode setup and decompressor; under TCG
//! that reaches init about 300 ms sooner. This crate owns recognising kernel files (bzImage,
//! ELF), decompressing a bzImage's payload (gzip, xz, lzma, bzip2, LZ4 legacy, zstd; not LZO),
//! finding the PVH note, and the content-addressed cache of extracted vmlinux files
//! ([`KernelCache`]). The functions over bytes ([`inspect`], [`extract_vmlinux`],
//! [`pvh_entry`], [`choose_entry`]) do no I/O; the cache is the only I/O, and synchronous.
//!
//! It must not build QEMU arguments, run QEMU or touch the store: it answers "which file,
//! entered how", and the QEMU driver passes that file as `-kernel`. It must never make a kernel
//! unbootable: whatever it cannot use, or finds damaged, is booted as given.

mod cache;
mod elf;
mod entry;
mod error;
mod extract;
mod image;
#[cfg(test)]
mod testing;

pub use cache::{BootEntry, KernelCache, PreparedKernel};
pub use elf::pvh_entry;
pub use entry::{AsGivenReason, Entry, choose_entry};
pub use error::KernelError;
pub use extract::{SIZE_LIMIT, extract_vmlinux};
pub use image::{BzImage, Compression, KernelImage, inspect};
