//! The web console's server side: its files on both listeners without a token,
//! the API behind them still guarded, and the browser's way of passing the
//! token on a WebSocket. The app itself is tested in a browser (web/tests).

mod support;

use std::io::{Read, Write};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use support::*;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }
}

/// One HTTP/1.1 GET over `stream` (TCP or the Unix socket), read to the end.
fn get(mut stream: impl Read + Write, path: &str, extra: &[(&str, &str)]) -> Response {
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: vireo\r\nConnection: close\r\n");
    for (name, value) in extra {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).expect("send request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read response");
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("end of headers");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines.next().and_then(|line| line.split_whitespace().nth(1)?.parse().ok()).expect("status line");
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
        .collect();
    Response { status, headers, body: raw[split + 4..].to_vec() }
}

fn script_of(index: &str) -> String {
    let start = index.find("src=\"/assets/").expect("index.html loads a bundle") + 5;
    let end = index[start..].find('"').expect("closing quote") + start;
    index[start..end].to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_web_console_is_served_without_a_token_and_the_api_still_needs_one() {
    let daemon = Daemon::start_with_tcp(true);
    let addr = daemon.tcp.unwrap();
    let tcp = || std::net::TcpStream::connect(addr).expect("connect to the daemon's TCP listener");

    let index = get(tcp(), "/", &[]);
    assert_eq!(index.status, 200);
    assert_eq!(index.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(index.header("cache-control"), Some("no-cache"));
    let csp = index.header("content-security-policy").expect("the page has a content security policy");
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    let html = String::from_utf8(index.body.clone()).unwrap();

    // The bundle: gzip when asked for, cached for good, and revalidated by its ETag.
    let script = script_of(&html);
    let plain = get(tcp(), &script, &[]);
    assert_eq!(plain.status, 200);
    assert_eq!(plain.header("content-type"), Some("text/javascript; charset=utf-8"));
    assert!(plain.header("cache-control").unwrap().contains("immutable"));
    let zipped = get(tcp(), &script, &[("Accept-Encoding", "gzip, br")]);
    if zipped.header("content-encoding") == Some("gzip") {
        let mut unzipped = Vec::new();
        flate2::read::GzDecoder::new(&zipped.body[..]).read_to_end(&mut unzipped).expect("valid gzip");
        assert_eq!(unzipped, plain.body, "the gzip copy is the same file");
    } else {
        assert_eq!(zipped.body, plain.body, "a file that does not shrink is sent as is");
    }
    let etag = plain.header("etag").expect("an ETag").to_string();
    assert_eq!(get(tcp(), &script, &[("If-None-Match", &etag)]).status, 304);

    // The API is not opened by the page: no token, no data.
    let refused = get(tcp(), "/v1/vms", &[]);
    assert_eq!(refused.status, 401);
    assert!(String::from_utf8_lossy(&refused.body).contains("\"unauthorized\""));
    assert_eq!(get(tcp(), "/assets/no-such-file.js", &[]).status, 401, "unknown paths are the API's");

    // The Unix socket serves the same page (for local reverse proxies).
    let local = get(std::os::unix::net::UnixStream::connect(&daemon.socket).unwrap(), "/", &[]);
    assert_eq!((local.status, local.body), (200, index.body));
}

/// A WebSocket upgrade of the VM's console on TCP, offering these subprotocols.
async fn console_upgrade(
    daemon: &Daemon,
    vm: &str,
    protocols: &str,
) -> Result<
    (tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>, Option<String>),
    WsError,
> {
    let url = format!("ws://{}/v1/vms/{vm}/console", daemon.tcp.unwrap());
    let mut request = url.into_client_request().expect("a valid URL");
    request.headers_mut().insert("sec-websocket-protocol", HeaderValue::from_str(protocols).unwrap());
    let (socket, response) = tokio_tungstenite::connect_async(request).await?;
    let chosen = response.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok()).map(str::to_string);
    Ok((socket, chosen))
}

/// Reads the console until `pattern` shows (carriage returns dropped), or fails after a minute.
async fn read_until<S>(socket: &mut S, pattern: &str)
where
    S: futures_util::Stream<Item = Result<Message, WsError>> + Unpin,
{
    let mut seen = String::new();
    let found = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(Ok(message)) = socket.next().await {
            seen.push_str(&String::from_utf8_lossy(&message.into_data()).replace('\r', ""));
            if seen.contains(pattern) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found.ok(), Some(true), "{pattern:?} never came on the console: {seen:?}");
}

fn refused_status(result: Result<impl Sized, WsError>) -> u16 {
    match result {
        Err(WsError::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
        Ok(_) => panic!("expected an HTTP refusal, got a WebSocket"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_browser_passes_the_token_as_a_websocket_subprotocol() {
    let daemon = Daemon::start_with_tcp(true);
    let client = daemon.client();
    client.create_vm(&guest_spec("web")).await.unwrap();
    client.start_vm("web").await.unwrap();
    wait_for_log(&client, "web", MARKER, BOOT_TIMEOUT).await;

    assert_eq!(refused_status(console_upgrade(&daemon, "web", "binary").await), 401, "no token");
    assert_eq!(refused_status(console_upgrade(&daemon, "web", "binary, vireo.token.wrong").await), 401);

    let offered = format!("binary, vireo.token.{}", daemon.token());
    let (mut socket, chosen) = console_upgrade(&daemon, "web", &offered).await.expect("upgrade with the token");
    assert_eq!(chosen.as_deref(), Some("binary"), "the daemon answers with the protocol, never the token");
    // As run_in_guest does: a fresh prompt first, so no keystroke reaches the guest before its shell reads.
    socket.send(Message::Binary("\n".into())).await.unwrap();
    read_until(&mut socket, "guest# ").await;
    socket.send(Message::Binary("echo $((6*7))\n".into())).await.unwrap();
    read_until(&mut socket, "\n42").await;
    assert!(!daemon.log().contains(&daemon.token()), "the token is never logged");
}
