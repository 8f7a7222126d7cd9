//! The one error type of the crate.

use std::io;
use std::path::PathBuf;

use crate::Compression;

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("damaged bzImage: {reason}")]
    BadBzImage { reason: &'static str },
    #[error("not a bzImage")]
    NotBzImage,
    #[error("cannot extract a payload compressed with {compression}")]
    Unsupported { compression: Compression },
    #[error("cannot decompress the {compression} payload")]
    Decompress {
        compression: Compression,
        #[source]
        source: io::Error,
    },
    #[error("the payload declares {size} bytes once decompressed, more than the {limit} allowed")]
    TooLarge { size: usize, limit: usize },
    #[error("the payload does not decompress to the {declared} bytes its size trailer declares")]
    SizeMismatch { declared: usize },
    #[error("not an ELF file")]
    NotElf,
    #[error("damaged ELF file")]
    BadElf(#[from] object::read::Error),
    #[error("damaged PVH entry note: {reason}")]
    BadPvhNote { reason: &'static str },
    #[error("cannot {action} {}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl KernelError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> KernelError {
        let path = path.into();
        move |source| KernelError::Io { action, path, source }
    }
}
