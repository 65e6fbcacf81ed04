//! `wsat connect`: a line-oriented WebSocket client for the terminal (websocat / wscat
//! habits: a line in is a message out, every message printed on its own line).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, BufReader};
use wsat_client::{
    Client, ClientConfig, ClientError, DeflateConfig, Delivery, Event, OpCode, Proxy, Reconnect, Verification,
};

const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// Options of `wsat connect`.
#[derive(Debug, clap::Args)]
pub struct ConnectArgs {
    /// ws:// or wss:// URI; user:password@ in it sends Basic auth.
    uri: String,
    /// Extra request header, 'Name: value' (repeatable).
    #[arg(short = 'H', long = "header", value_name = "K: V")]
    headers: Vec<String>,
    /// Offer this subprotocol (Sec-WebSocket-Protocol); the chosen one is reported on stderr.
    #[arg(long, visible_alias = "protocol")]
    subprotocol: Option<String>,
    /// Trust this CA (PEM) for wss instead of the built-in roots.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// Verify the certificate chain but not the host name (the firmware's auth modes 2/3).
    #[arg(long, conflicts_with = "insecure")]
    chain_only: bool,
    /// Do not verify the server's certificate at all.
    #[arg(short = 'k', short_alias = 'n', long)]
    insecure: bool,
    /// Send lines as binary messages instead of text.
    #[arg(short, long)]
    binary: bool,
    /// Send a ping this often (seconds); off by default.
    #[arg(long, value_name = "S")]
    ping_interval: Option<u64>,
    /// Give up when a ping stays unanswered this long (seconds).
    #[arg(long, value_name = "S", requires = "ping_interval")]
    ping_timeout: Option<u64>,
    /// Reconnect after losing the connection, waiting this long (milliseconds).
    #[arg(long, value_name = "MS")]
    reconnect_ms: Option<u64>,
    /// Follow at most this many redirects. A redirect to another scheme, host or port is
    /// sent without credentials (Authorization, Cookie, Proxy-Authorization, the URI's
    /// user:password), as curl does.
    #[arg(long, default_value_t = 5)]
    max_redirects: u32,
    /// Follow a redirect from wss:// to ws:// (refused by default: it leaves TLS).
    #[arg(long)]
    allow_insecure_redirect: bool,
    /// Largest message accepted (bytes); longer ones close the connection with 1009.
    #[arg(long, default_value_t = 64 << 20)]
    max_message: usize,
    /// Close code sent at the end of input.
    #[arg(long, default_value_t = 1000)]
    close_code: u16,
    /// Print received pings and pongs on stderr.
    #[arg(long)]
    show_ping_pong: bool,
    /// Connect through a proxy: http://[user:pass@]host[:port] (HTTP CONNECT) or
    /// socks5://[user:pass@]host[:port] (SOCKS5; the proxy resolves host names).
    ///
    /// http:// sends CONNECT host:port, with Proxy-Authorization: Basic when the URL has
    /// credentials; socks5:// (or socks5h://) sends the target's host name to the proxy (an
    /// IP address as an address), with RFC 1929 user name and password when given. As in
    /// curl: no scheme means http://, the default port is 1080, user and password are
    /// percent-decoded. TLS for wss:// and the upgrade run through the tunnel to the target
    /// (its certificate verified as without a proxy); redirects take the same proxy. The
    /// proxy's credentials go to the proxy only and its password never appears in logs or
    /// errors.
    ///
    /// Without --proxy, the environment is read as curl reads it: for wss:// wss_proxy,
    /// WSS_PROXY, https_proxy, HTTPS_PROXY; for ws:// ws_proxy, WS_PROXY, http_proxy (not
    /// HTTP_PROXY, as curl); then all_proxy, ALL_PROXY. no_proxy (or NO_PROXY) bypasses
    /// them: comma-separated host names (each also matching its subdomains; a leading dot
    /// is ignored), IP addresses or CIDR ranges, or * for every host; ports are not
    /// matched. --proxy wins over the environment, no_proxy included; --proxy '' uses no
    /// proxy at all.
    #[arg(long, value_name = "URL")]
    proxy: Option<String>,
    /// Do not offer permessage-deflate (RFC 7692). By default it is offered
    /// (`permessage-deflate; client_max_window_bits`) as browsers do; what the server
    /// agreed is printed on stderr as `extensions: ...`. A compressed message counts its
    /// inflated size against --max-message while it is inflated.
    #[arg(long)]
    no_deflate: bool,
}

fn config(args: &ConnectArgs) -> anyhow::Result<ClientConfig> {
    let mut c = ClientConfig::new(&args.uri);
    for h in &args.headers {
        let Some((name, value)) = h.split_once(':') else {
            bail!("header {h:?} is not 'Name: value'")
        };
        c.headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    c.subprotocol = args.subprotocol.clone();
    c.delivery = Delivery::Messages {
        max_size: args.max_message,
    };
    c.ping_interval = args.ping_interval.map(Duration::from_secs);
    c.pong_timeout = args.ping_timeout.map(Duration::from_secs);
    c.reconnect = args
        .reconnect_ms
        .map_or(Reconnect::Disabled, |ms| Reconnect::Fixed(Duration::from_millis(ms)));
    c.max_redirects = args.max_redirects;
    c.allow_insecure_redirect = args.allow_insecure_redirect;
    c.compression = (!args.no_deflate).then(DeflateConfig::default);
    let read = |p: &PathBuf| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    c.tls.ca_pem = args.ca.as_ref().map(read).transpose()?;
    c.tls.client_cert_pem = args.cert.as_ref().map(read).transpose()?;
    c.tls.client_key_pem = args.key.as_ref().map(read).transpose()?;
    c.tls.verification = match (args.insecure, args.chain_only) {
        (true, _) => Verification::None,
        (_, true) => Verification::ChainOnly,
        _ => Verification::Full,
    };
    c.proxy = match args.proxy.as_deref().map(str::trim) {
        Some("") => None,
        // The error never shows the password.
        Some(url) => Some(Proxy::parse(url).context("--proxy")?),
        // An invalid URI is reported by Client::start.
        None => match c.target() {
            Ok(target) => Proxy::from_env(&target, |name| std::env::var(name).ok())?,
            Err(_) => None,
        },
    };
    Ok(c)
}

/// Runs until the connection ends for good (a close, or a drop without `--reconnect-ms`),
/// whether or not stdin is still open. Exits 0 only after a closing handshake with code
/// 1000 or 1001 (or none); a failed connect, a drop, a protocol error or another close code
/// exits 1. The cause is printed on stderr as the client saw it first.
pub async fn run(args: ConnectArgs) -> anyhow::Result<ExitCode> {
    let config = config(&args)?;
    // ClientConfig's Debug hides the credentials (tests/log_redaction.rs).
    tracing::debug!(?config, "connecting");
    let (client, mut events) = Client::start(config)?;
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let mut input_open = true;
    let mut connected = false;
    let mut clean_close = false;
    let mut stdout = std::io::stdout();
    loop {
        tokio::select! {
            event = events.recv() => match event {
                None | Some(Event::Finish) => return Ok(if clean_close { ExitCode::SUCCESS } else { ExitCode::FAILURE }),
                Some(Event::Connected(info)) => {
                    connected = true;
                    match &info.subprotocol {
                        Some(p) => eprintln!("connected to {} (subprotocol {p})", info.uri),
                        None => eprintln!("connected to {}", info.uri),
                    }
                    if let Some(deflate) = &info.deflate {
                        eprintln!("extensions: {}", deflate.response());
                    }
                }
                Some(Event::Message(m)) => {
                    stdout.write_all(&m.payload)?;
                    stdout.write_all(b"\n")?;
                    stdout.flush()?;
                }
                Some(Event::Data(d)) if args.show_ping_pong && (d.opcode == OpCode::PING || d.opcode == OpCode::PONG) => {
                    eprintln!("{} {}", d.opcode, String::from_utf8_lossy(&d.data));
                }
                Some(Event::Error(ClientError::Protocol(e))) => eprintln!("error: {} protocol error: {e}", e.close_code()),
                Some(Event::Error(e)) => eprintln!("error: {e}"),
                Some(Event::Disconnected(reason)) => {
                    eprintln!("disconnected: {reason:?}");
                    connected = false;
                    clean_close = false;
                }
                Some(Event::Closed { code, reason }) => {
                    eprintln!("closed: code {} {reason}", code.map_or("none".into(), |c| c.to_string()));
                    connected = false;
                    clean_close = matches!(code, None | Some(1000 | 1001));
                }
                Some(_) => {}
            },
            line = stdin.next_line(), if input_open && connected => match line? {
                None => {
                    input_open = false;
                    if let Err(e) = client.close(Some(args.close_code), "", Duration::from_secs(5)).await {
                        eprintln!("close: {e}");
                    }
                }
                Some(line) => {
                    if let Err(e) = handle_line(&client, &line, args.binary).await {
                        eprintln!("send: {e}");
                    }
                }
            },
        }
    }
}

/// A line from stdin: `/ping [data]`, `/close [code [reason]]`, or a message.
async fn handle_line(client: &Client, line: &str, binary: bool) -> anyhow::Result<()> {
    if let Some(rest) = line.strip_prefix("/ping") {
        client
            .send_frame(
                OpCode::PING,
                true,
                Bytes::copy_from_slice(rest.trim().as_bytes()),
                SEND_TIMEOUT,
            )
            .await?;
    } else if let Some(rest) = line.strip_prefix("/close") {
        let mut parts = rest.trim().splitn(2, ' ');
        let code = match parts.next().filter(|s| !s.is_empty()) {
            Some(c) => Some(c.parse::<u16>().with_context(|| format!("close code {c:?}"))?),
            None => None,
        };
        client
            .close(code, parts.next().unwrap_or(""), Duration::from_secs(5))
            .await?;
    } else if binary {
        client
            .send_binary(Bytes::copy_from_slice(line.as_bytes()), SEND_TIMEOUT)
            .await?;
    } else {
        client.send_text(line, SEND_TIMEOUT).await?;
    }
    Ok(())
}
