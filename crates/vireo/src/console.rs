//! `vireo vm console`: attach the terminal (or a pipe) to a VM's serial console.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Stdout};
use tokio::signal::unix::{SignalKind, signal};
use tokio::time::Instant;
use vireo_client::{Client, ConsoleReceiver, ConsoleSender};

/// Ctrl-], as in telnet and virsh.
const DETACH: u8 = 0x1d;
/// With piped input, output is drained after stdin ends until the guest is quiet this long...
const QUIET: Duration = Duration::from_millis(500);
/// ...but no longer than this, in case the guest never stops talking.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);
/// How long a polite WebSocket close may take before we just leave.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

pub async fn attach(client: &Client, name: &str) -> anyhow::Result<()> {
    let (mut sender, receiver) = client.console(name).await?.split();
    let result = if std::io::stdin().is_terminal() {
        interactive(name, &mut sender, receiver).await
    } else {
        piped(&mut sender, receiver).await
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, sender.close()).await;
    result
}

/// How an interactive session ended.
enum Ending {
    Detached,
    ConsoleClosed,
    InputClosed,
    Signalled,
}

async fn interactive(name: &str, sender: &mut ConsoleSender, mut receiver: ConsoleReceiver) -> anyhow::Result<()> {
    note(&format!("Connected to {name}'s console; detach with Ctrl-]\n"));
    let ending = {
        // Restored when dropped: on detach, on error (`?`) and on panic alike.
        let _raw = RawMode::enable()?;
        relay_terminal(sender, &mut receiver).await?
    };
    match ending {
        Ending::Detached => note(&format!("\nDetached from {name}'s console\n")),
        Ending::ConsoleClosed => note(&format!("\n{name}'s console closed (the VM stopped?)\n")),
        Ending::InputClosed | Ending::Signalled => note("\n"),
    }
    Ok(())
}

async fn relay_terminal(sender: &mut ConsoleSender, receiver: &mut ConsoleReceiver) -> anyhow::Result<Ending> {
    // A hangup or kill must not leave the terminal raw, so these end the session like a detach.
    let mut hangup = signal(SignalKind::hangup()).context("cannot watch for SIGHUP")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch for SIGTERM")?;
    let (mut stdin, mut stdout) = (tokio::io::stdin(), tokio::io::stdout());
    let mut buffer = [0u8; 1024];
    loop {
        tokio::select! {
            read = stdin.read(&mut buffer) => {
                let typed = &buffer[..read.context("cannot read the terminal")?];
                if typed.is_empty() {
                    return Ok(Ending::InputClosed);
                }
                if let Some(at) = typed.iter().position(|&byte| byte == DETACH) {
                    if at > 0 {
                        sender.send(&typed[..at]).await?;
                    }
                    return Ok(Ending::Detached);
                }
                sender.send(typed).await?;
            }
            output = receiver.recv() => match output {
                Some(bytes) => write_out(&mut stdout, &bytes?).await?,
                None => return Ok(Ending::ConsoleClosed),
            },
            _ = hangup.recv() => return Ok(Ending::Signalled),
            _ = terminate.recv() => return Ok(Ending::Signalled),
        }
    }
}

/// Pipes stdin to the console and the console to stdout; after stdin ends, drains the output.
async fn piped(sender: &mut ConsoleSender, mut receiver: ConsoleReceiver) -> anyhow::Result<()> {
    let (mut stdin, mut stdout) = (tokio::io::stdin(), tokio::io::stdout());
    let mut buffer = [0u8; 4096];
    loop {
        tokio::select! {
            read = stdin.read(&mut buffer) => {
                let input = &buffer[..read.context("cannot read standard input")?];
                if input.is_empty() {
                    break;
                }
                sender.send(input).await?;
            }
            output = receiver.recv() => match output {
                Some(bytes) => write_out(&mut stdout, &bytes?).await?,
                None => return Ok(()),
            },
        }
    }
    drain(&mut receiver, &mut stdout).await
}

async fn drain(receiver: &mut ConsoleReceiver, stdout: &mut Stdout) -> anyhow::Result<()> {
    let deadline = Instant::now() + DRAIN_LIMIT;
    while Instant::now() < deadline {
        match tokio::time::timeout(QUIET, receiver.recv()).await {
            Ok(Some(bytes)) => write_out(stdout, &bytes?).await?,
            Ok(None) | Err(_) => break,
        }
    }
    Ok(())
}

async fn write_out(stdout: &mut Stdout, bytes: &[u8]) -> anyhow::Result<()> {
    let written = async {
        stdout.write_all(bytes).await?;
        stdout.flush().await
    };
    match written.await {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Err(crate::output::StdoutClosed.into()),
        Err(err) => Err(anyhow::Error::new(err).context("cannot write to standard output")),
    }
}

/// A message for the person at the terminal, written while it is not in raw mode.
fn note(text: &str) {
    let _ = write!(std::io::stderr(), "{text}");
}

/// The terminal in raw mode for as long as this lives.
struct RawMode;

impl RawMode {
    fn enable() -> anyhow::Result<Self> {
        crossterm::terminal::enable_raw_mode().context("cannot put the terminal in raw mode")?;
        Ok(RawMode)
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = crossterm::terminal::disable_raw_mode();
    }
}
