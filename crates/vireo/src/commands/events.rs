//! `vireo events`: the daemon's event log, listed or followed.
//!
//! `--follow` prints the latest events, then each new one as it happens; when
//! the connection drops (the daemon restarts) it reconnects and resumes after
//! the last event it printed, so nothing is missed or printed twice.

use std::time::Duration;

use vireo_api::{Event, EventKind};
use vireo_client::{Client, ClientError, Endpoint};

use crate::cli::{EventsArgs, OutputFormat};
use crate::output;

/// How long `--follow` waits before reconnecting to a daemon it lost.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

pub async fn run(args: EventsArgs, endpoint: Endpoint) -> anyhow::Result<()> {
    let client = Client::new(endpoint);
    let format = args.output.format;
    let vm = args.vm.as_deref();
    // With --follow --after, the stream itself brings everything after that id.
    let shown = match (args.follow, args.after) {
        (true, Some(_)) => Vec::new(),
        (_, after) => client.list_events(after, vm, args.limit).await?,
    };
    if !args.follow {
        return match format {
            OutputFormat::Json => output::print_json(&shown),
            OutputFormat::Table => output::print(&format!("{}{}", header(), lines(&shown))),
        };
    }
    let mut printer = Printer { format, header_done: false };
    for event in &shown {
        printer.print(event)?;
    }
    // Nothing shown yet (for this filter) means that any event after id 0 is new.
    let after = args.after.or(shown.last().map(|e| e.id)).unwrap_or(0);
    follow(&client, vm, after, &mut printer).await
}

/// Prints events as they come, forever; a lost connection is resumed after the last one printed.
async fn follow(client: &Client, vm: Option<&str>, mut after: u64, printer: &mut Printer) -> anyhow::Result<()> {
    printer.start()?;
    // Said once per lost connection, not at every attempt to get it back.
    let mut say_why = true;
    loop {
        let lost = match client.follow_events(Some(after), vm).await {
            // The daemon refused the request itself: asking again will not help.
            Err(ClientError::Api(err)) => return Err(ClientError::Api(err).into()),
            Err(err) => err.to_string(),
            Ok(mut stream) => {
                say_why = true;
                loop {
                    match stream.next().await {
                        Some(Ok(event)) => {
                            printer.print(&event)?;
                            after = event.id;
                        }
                        // An event this CLI cannot read would come again after every reconnect.
                        Some(Err(err @ ClientError::Protocol(_))) => return Err(err.into()),
                        Some(Err(err)) => break err.to_string(),
                        None => break "the daemon closed the stream".to_string(),
                    }
                }
            }
        };
        if std::mem::replace(&mut say_why, false) {
            eprintln!("vireo events: {lost}; resuming after event {after} once the daemon is back");
        }
        tokio::time::sleep(RECONNECT_DELAY).await;
    }
}

/// Prints followed events: JSON lines, or table rows under one header.
struct Printer {
    format: OutputFormat,
    header_done: bool,
}

impl Printer {
    /// The header, once, even before the first event.
    fn start(&mut self) -> anyhow::Result<()> {
        if self.format == OutputFormat::Table && !std::mem::replace(&mut self.header_done, true) {
            output::print(&header())?;
        }
        Ok(())
    }

    fn print(&mut self, event: &Event) -> anyhow::Result<()> {
        self.start()?;
        match self.format {
            OutputFormat::Json => output::print(&format!("{}\n", serde_json::to_string(event)?)),
            OutputFormat::Table => output::print(&lines(std::slice::from_ref(event))),
        }
    }
}

/// TIME ID VM KIND DETAILS, in columns wide enough for most values, so rows
/// printed one at a time (`--follow`) line up too.
fn row(time: &str, id: &str, vm: &str, kind: &str, details: &str) -> String {
    format!("{time:<24}  {id:>6}  {vm:<12}  {kind:<20}  {details}").trim_end().to_string() + "\n"
}

fn header() -> String {
    row("TIME", "ID", "VM", "KIND", "DETAILS")
}

fn lines(events: &[Event]) -> String {
    events
        .iter()
        .map(|event| {
            let vm = event.vm.as_deref().unwrap_or("-");
            row(&event.time, &event.id.to_string(), vm, &event.kind.name(), &details(&event.kind))
        })
        .collect()
}

/// `from=stopped to=starting`: each detail as `key=value` (by key), text unquoted.
fn details(kind: &EventKind) -> String {
    kind.details()
        .into_iter()
        .map(|(key, value)| match value {
            serde_json::Value::String(text) => format!("{key}={text}"),
            other => format!("{key}={other}"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use vireo_api::VmState;

    use super::*;

    fn event(id: u64, vm: Option<&str>, kind: EventKind) -> Event {
        Event { id, time: "2025-01-01T00:00:00.000Z".into(), vm: vm.map(str::to_string), kind }
    }

    #[test]
    fn rows_line_up_under_the_header() {
        let events = [
            event(7, Some("web1"), EventKind::VmStateChanged { from: VmState::Stopped, to: VmState::Starting }),
            event(12, None, EventKind::PoolCreated { pool: "fast".into() }),
        ];
        let text = format!("{}{}", header(), lines(&events));
        assert_eq!(
            text,
            "TIME                          ID  VM            KIND                  DETAILS\n\
             2025-01-01T00:00:00.000Z       7  web1          vm.state_changed      from=stopped to=starting\n\
             2025-01-01T00:00:00.000Z      12  -             pool.created          pool=fast\n"
        );
    }

    #[test]
    fn details_quote_nothing_but_keep_every_fact() {
        let crashed = EventKind::VmCrashed { reason: "QEMU exited unexpectedly: killed".into() };
        assert_eq!(details(&crashed), "reason=QEMU exited unexpectedly: killed");
        let started = EventKind::MigrationStarted { destination: "http://10.0.0.6:7070".into(), copy_storage: true };
        assert_eq!(details(&started), "copy_storage=true destination=http://10.0.0.6:7070");
        assert_eq!(details(&EventKind::VmStarted {}), "");
    }
}
