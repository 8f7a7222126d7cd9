//! The graphical display end to end: a VM with `--display std` gets a VGA card
//! and a VNC server on a Unix socket in its private directory, which
//! `GET /v1/vms/{name}/vnc` relays over a WebSocket (the RFB protocol is spoken
//! here by hand, as noVNC would). The display survives save/restore and a live
//! migration, each QEMU with a socket of its own.

mod support;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use support::*;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use vireo_api::{ErrorCode, Vga, VmSpec, VmState};

const RFB_3_8: &[u8] = b"RFB 003.008\n";
const RFB_TIMEOUT: Duration = Duration::from_secs(30);

fn display_spec(name: &str) -> VmSpec {
    let mut spec = guest_spec(name);
    spec.display.vga = Vga::Std;
    spec
}

/// The WebSocket upgrade request of a VM's display, offering these subprotocols.
fn vnc_request(host: &str, vm: &str, protocols: &str) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    let mut request = format!("ws://{host}/v1/vms/{vm}/vnc").into_client_request().expect("a valid URL");
    request.headers_mut().insert("sec-websocket-protocol", HeaderValue::from_str(protocols).unwrap());
    request
}

/// The display over TCP, the token passed as a subprotocol as a browser does; returns the chosen protocol too.
async fn vnc_over_tcp(
    daemon: &Daemon,
    vm: &str,
) -> Result<(WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>, Option<String>), WsError> {
    let addr = daemon.tcp.expect("daemon listens on TCP").to_string();
    let request = vnc_request(&addr, vm, &format!("binary, vireo.token.{}", daemon.token()));
    let (socket, response) = tokio_tungstenite::connect_async(request).await?;
    let chosen = response.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok()).map(str::to_string);
    Ok((socket, chosen))
}

/// The display over the daemon's Unix socket (no token needed there).
async fn vnc_over_unix(daemon: &Daemon, vm: &str) -> Result<WebSocketStream<tokio::net::UnixStream>, WsError> {
    let stream = tokio::net::UnixStream::connect(&daemon.socket).await.expect("connect to the daemon's socket");
    let (socket, _) = tokio_tungstenite::client_async(vnc_request("vireo", vm, "binary"), stream).await?;
    Ok(socket)
}

/// The HTTP status and API error code of a refused upgrade.
fn refusal<T>(result: Result<T, WsError>) -> (u16, ErrorCode) {
    match result {
        Err(WsError::Http(response)) => {
            let body = response.body().as_deref().unwrap_or_default();
            let error: vireo_api::ApiError = serde_json::from_slice(body)
                .unwrap_or_else(|e| panic!("not an API error ({e}): {}", String::from_utf8_lossy(body)));
            (response.status().as_u16(), error.code)
        }
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
        Ok(_) => panic!("expected an HTTP refusal, got a WebSocket"),
    }
}

/// Reads the RFB byte stream out of binary WebSocket messages.
struct Rfb<S> {
    socket: S,
    buffer: Vec<u8>,
}

impl<S> Rfb<S>
where
    S: futures_util::Stream<Item = Result<Message, WsError>> + futures_util::Sink<Message, Error = WsError> + Unpin,
{
    fn new(socket: S) -> Self {
        Rfb { socket, buffer: Vec::new() }
    }

    async fn read_exact(&mut self, n: usize) -> Vec<u8> {
        let filled = tokio::time::timeout(RFB_TIMEOUT, async {
            while self.buffer.len() < n {
                match self.socket.next().await {
                    Some(Ok(Message::Binary(bytes))) => self.buffer.extend_from_slice(&bytes),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    other => panic!("the RFB stream ended after {:?}: {other:?}", self.buffer),
                }
            }
        })
        .await;
        assert!(filled.is_ok(), "{n} bytes of RFB did not come within {RFB_TIMEOUT:?}; have {:?}", self.buffer);
        self.buffer.drain(..n).collect()
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.socket.send(Message::Binary(bytes.to_vec().into())).await.expect("send to the VNC server");
    }

    /// Version and security handshake (None), client and server init, then one full
    /// framebuffer update, from the VNC server of VM `vm`. Returns the framebuffer's size.
    async fn handshake(&mut self, vm: &str) -> (u16, u16) {
        assert_eq!(self.read_exact(12).await, RFB_3_8, "QEMU's VNC server greets with RFB 3.8");
        self.send(RFB_3_8).await;
        let count = self.read_exact(1).await[0] as usize;
        assert!(count > 0, "the server offers no security type");
        let types = self.read_exact(count).await;
        // 1 = None: the socket is private to the daemon, and the daemon's token guards the WebSocket.
        assert_eq!(types, [1], "security types offered");
        self.send(&[1]).await;
        assert_eq!(self.read_exact(4).await, [0, 0, 0, 0], "security result: ok");
        self.send(&[1]).await; // ClientInit: shared
        let init = self.read_exact(24).await;
        let (width, height) = (u16::from_be_bytes([init[0], init[1]]), u16::from_be_bytes([init[2], init[3]]));
        let name_len = u32::from_be_bytes([init[20], init[21], init[22], init[23]]) as usize;
        let name = self.read_exact(name_len).await;
        assert_eq!(String::from_utf8_lossy(&name), format!("QEMU ({vm})"), "the desktop is named after the VM");
        assert!(width > 0 && height > 0, "framebuffer {width}x{height}");
        // FramebufferUpdateRequest, not incremental, the whole screen.
        let mut request = vec![3, 0, 0, 0, 0, 0];
        request.extend(width.to_be_bytes());
        request.extend(height.to_be_bytes());
        self.send(&request).await;
        let update = self.read_exact(4).await;
        assert_eq!(update[0], 0, "a FramebufferUpdate answers");
        assert!(u16::from_be_bytes([update[2], update[3]]) > 0, "the update has rectangles");
        (width, height)
    }

    /// Waits until the server closes the stream.
    async fn wait_closed(&mut self, timeout: Duration) {
        let closed = tokio::time::timeout(timeout, async {
            loop {
                match self.socket.next().await {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                    Some(Ok(_)) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "the display's WebSocket stayed open {timeout:?} after QEMU ended");
    }
}

/// The `-vnc` argument of the VM's running QEMU.
fn vnc_arg(daemon: &Daemon, vm: &str) -> Option<String> {
    let pid = daemon.qemu_pid(vm).expect("qemu.pid");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("QEMU's command line");
    let args: Vec<String> = cmdline.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
    let index = args.iter().position(|a| a == "-vnc")?;
    args.get(index + 1).cloned()
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o7777
}

#[tokio::test(flavor = "multi_thread")]
async fn a_display_vm_speaks_rfb_through_the_websocket_and_keeps_its_display_over_save_and_restore() {
    let daemon = Daemon::start_with_tcp(true);
    let _logs = LogsOnPanic::new(&[&daemon]);
    let client = daemon.client();
    let (kernel, initrd) = guest();
    daemon.cli_ok(&[
        "vm",
        "create",
        "screen",
        "--memory",
        "128MiB",
        "--kernel",
        kernel.to_str().unwrap(),
        "--initrd",
        initrd.to_str().unwrap(),
        "--cmdline",
        "console=ttyS0 quiet panic=-1",
        "--display",
        "std",
    ]);
    assert_eq!(client.get_vm("screen").await.unwrap().spec.display.vga, Vga::Std);
    let shown = daemon.cli_ok(&["vm", "show", "screen"]);
    assert!(shown.contains("\ndisplay:      std vga, vnc\n"), "{shown}");
    client.create_vm(&guest_spec("headless")).await.unwrap();
    assert!(!daemon.cli_ok(&["vm", "show", "headless"]).contains("display:"));

    // Refusals, as HTTP errors before any upgrade.
    assert_eq!(refusal(vnc_over_tcp(&daemon, "nosuchvm").await), (404, ErrorCode::VmNotFound));
    assert_eq!(refusal(vnc_over_tcp(&daemon, "headless").await), (409, ErrorCode::NoDisplay));
    assert_eq!(refusal(vnc_over_tcp(&daemon, "screen").await), (409, ErrorCode::InvalidState), "not running yet");
    let addr = daemon.tcp.unwrap().to_string();
    let no_token = tokio_tungstenite::connect_async(vnc_request(&addr, "screen", "binary")).await;
    assert_eq!(refusal(no_token).0, 401);

    daemon.cli_ok(&["vm", "start", "screen"]);
    wait_for_state(&client, "screen", VmState::Running, Duration::from_secs(30)).await;

    // QEMU's VNC server is a Unix socket in the VM's private directory, never a TCP port.
    let vm_dir = daemon.dir.path().join("vms/screen");
    let socket = vm_dir.join("vnc.sock");
    assert_eq!(vnc_arg(&daemon, "screen"), Some(format!("unix:{}", socket.display())));
    assert_eq!(mode_of(&vm_dir), 0o700, "the VM's directory is private");
    assert!(std::fs::metadata(&socket).unwrap().file_type().is_socket());
    assert_eq!(mode_of(&socket) & 0o077, 0, "vnc.sock is the daemon user's alone: {:o}", mode_of(&socket));

    // The browser's way: TCP, the token as a subprotocol, `binary` chosen.
    let (socket_ws, chosen) = vnc_over_tcp(&daemon, "screen").await.expect("upgrade with the token");
    assert_eq!(chosen.as_deref(), Some("binary"));
    let mut rfb = Rfb::new(socket_ws);
    let (width, height) = rfb.handshake("screen").await;
    eprintln!("framebuffer {width}x{height}");
    drop(rfb);
    // Two viewers at once, each with a connection of its own.
    let mut first = Rfb::new(vnc_over_unix(&daemon, "screen").await.expect("upgrade on the Unix socket"));
    let mut second = Rfb::new(vnc_over_unix(&daemon, "screen").await.expect("a second viewer"));
    first.handshake("screen").await;
    second.handshake("screen").await;
    drop((first, second));

    // Saved and restored: the restored QEMU has the same devices (else the state would
    // not load) and a VNC server again.
    wait_for_log(&client, "screen", MARKER, BOOT_TIMEOUT).await;
    // A display VM boots through SeaBIOS and the kernel's own entry, so the screen is
    // set up: VGA text mode (720x400), not QEMU's 640x480 "not initialized" placeholder.
    let shown: serde_json::Value =
        serde_json::from_str(&daemon.cli_ok(&["vm", "show", "screen", "-o", "json"])).unwrap();
    assert_eq!((shown["boot"]["entry"].as_str(), shown["boot"]["firmware"].as_str()), (Some("linux"), Some("seabios")));
    let mut viewer = Rfb::new(vnc_over_unix(&daemon, "screen").await.expect("upgrade on the Unix socket"));
    assert_eq!(viewer.handshake("screen").await, (720, 400), "the guest's VGA text screen");
    drop(viewer);
    daemon.cli_ok(&["vm", "save", "screen"]);
    assert!(!socket.exists() || std::os::unix::net::UnixStream::connect(&socket).is_err(), "no VNC while saved");
    assert_eq!(refusal(vnc_over_tcp(&daemon, "screen").await), (409, ErrorCode::InvalidState), "saved");
    daemon.cli_ok(&["vm", "start", "screen"]);
    wait_for_state(&client, "screen", VmState::Running, Duration::from_secs(60)).await;
    assert_eq!(run_in_guest(&client, "screen", "echo $((6*7))").await, "42", "the restored guest runs on");
    let mut rfb = Rfb::new(vnc_over_unix(&daemon, "screen").await.expect("the display after a restore"));
    rfb.handshake("screen").await;

    // A viewer is let go when QEMU ends.
    daemon.cli_ok(&["vm", "stop", "screen", "--force"]);
    rfb.wait_closed(Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_migrated_display_vm_has_its_vnc_server_on_the_destination() {
    let (src, dst) = Daemon::pair_in_netns();
    let _logs = LogsOnPanic::new(&[&src, &dst]);
    let (a, b) = (src.client(), dst.client());
    a.create_vm(&display_spec("mover")).await.expect("create");
    a.start_vm("mover").await.expect("start");
    wait_for_log(&a, "mover", MARKER, BOOT_TIMEOUT).await;
    Rfb::new(vnc_over_unix(&src, "mover").await.expect("the display on the source")).handshake("mover").await;

    let (url, token) = (dst.url(), dst.token());
    let migrate =
        ["vm", "migrate", "mover", "--to", &url, "--to-token", &token, "--max-downtime", "500", "--bandwidth", "256"];
    let output = src.cli(&migrate);
    assert!(output.status.success(), "vireo vm migrate failed: {}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(b.get_vm("mover").await.unwrap().state, VmState::Running);
    assert_eq!(b.get_vm("mover").await.unwrap().spec.display.vga, Vga::Std);

    // The destination's QEMU listens in the destination's own directory.
    let socket = dst.dir.path().join("vms/mover/vnc.sock");
    assert_eq!(vnc_arg(&dst, "mover"), Some(format!("unix:{}", socket.display())));
    Rfb::new(vnc_over_unix(&dst, "mover").await.expect("the display on the destination")).handshake("mover").await;
    assert_eq!(run_in_guest(&b, "mover", "echo $((6*7))").await, "42", "the guest runs on after the move");
}
