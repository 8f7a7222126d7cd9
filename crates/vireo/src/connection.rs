//! Which daemon the client commands talk to: `--socket`, `--url` + `--token`, their
//! environment variables, or the default socket.

use std::path::PathBuf;

use anyhow::bail;
use clap::ArgMatches;
use clap::parser::ValueSource;
use vireo_client::{Endpoint, default_data_dir, default_socket};

use crate::cli::ConnectionArgs;

/// Where a setting came from: the command line beats the environment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    CommandLine,
    Environment,
}

/// A setting and its origin.
pub type Sourced<T> = Option<(T, Origin)>;

/// The endpoint chosen by the connection options in `matches`.
pub fn endpoint(args: &ConnectionArgs, matches: &ArgMatches) -> anyhow::Result<Endpoint> {
    let origin = |id: &str| match matches.value_source(id) {
        Some(ValueSource::EnvVariable) => Origin::Environment,
        _ => Origin::CommandLine,
    };
    let socket = args.socket.clone().map(|socket| (socket, origin("socket")));
    let url = args.url.clone().map(|url| (url, origin("url")));
    choose(socket, url, args.token.clone())
}

/// `--url` needs a token; `--socket` and `--url` given the same way are ambiguous.
pub fn choose(socket: Sourced<PathBuf>, url: Sourced<String>, token: Option<String>) -> anyhow::Result<Endpoint> {
    let use_url = match (&socket, &url) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some((_, Origin::Environment)), Some((_, Origin::CommandLine))) => true,
        (Some((_, Origin::CommandLine)), Some((_, Origin::Environment))) => false,
        (Some((_, Origin::CommandLine)), Some((_, Origin::CommandLine))) => {
            bail!("give either --socket or --url, not both")
        }
        (Some((_, Origin::Environment)), Some((_, Origin::Environment))) => {
            bail!("VIREO_SOCKET and VIREO_URL are both set; unset one of them")
        }
    };
    match (use_url, url, socket) {
        (true, Some((url, _)), _) => {
            let Some(token) = token.filter(|t| !t.is_empty()) else {
                bail!(
                    "--url needs the API token: pass --token or set VIREO_TOKEN (the daemon keeps it in DATA_DIR/api-token)"
                );
            };
            Ok(Endpoint::Tcp { url, token })
        }
        (_, _, Some((socket, _))) => Ok(Endpoint::Unix(socket)),
        _ => Ok(Endpoint::Unix(default_socket(&default_data_dir()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLI: Origin = Origin::CommandLine;
    const ENV: Origin = Origin::Environment;

    fn socket(origin: Origin) -> Sourced<PathBuf> {
        Some(("/s.sock".into(), origin))
    }

    fn url(origin: Origin) -> Sourced<String> {
        Some(("http://h:1".into(), origin))
    }

    fn token() -> Option<String> {
        Some("t".into())
    }

    #[test]
    fn the_socket_is_the_default() {
        assert_eq!(choose(socket(ENV), None, None).unwrap(), Endpoint::Unix("/s.sock".into()));
        assert!(matches!(choose(None, None, token()).unwrap(), Endpoint::Unix(path) if path.ends_with("vireo.sock")));
    }

    #[test]
    fn url_needs_a_token() {
        let err = choose(None, url(CLI), None).unwrap_err().to_string();
        assert!(err.starts_with("--url needs the API token"), "{err}");
        assert!(choose(None, url(CLI), Some(String::new())).is_err());
        assert_eq!(
            choose(None, url(ENV), token()).unwrap(),
            Endpoint::Tcp { url: "http://h:1".into(), token: "t".into() }
        );
    }

    #[test]
    fn the_command_line_beats_the_environment() {
        assert!(matches!(choose(socket(ENV), url(CLI), token()).unwrap(), Endpoint::Tcp { .. }));
        assert!(matches!(choose(socket(CLI), url(ENV), token()).unwrap(), Endpoint::Unix(_)));
        assert!(choose(socket(CLI), url(CLI), token()).is_err());
        assert!(choose(socket(ENV), url(ENV), token()).is_err());
    }
}
