//! `wsat echo-server`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use wsat::echo_server::EchoServer;
use wsat::tls_server::server_config;

/// Options of `wsat echo-server`.
#[derive(Debug, clap::Args)]
pub struct EchoArgs {
    /// Address to listen on, e.g. 127.0.0.1:8765.
    #[arg(long, default_value = "127.0.0.1:8765")]
    listen: String,
    /// Serve wss with this certificate chain (PEM).
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// Require a client certificate signed by this CA (PEM): mutual TLS.
    #[arg(long, requires = "cert")]
    client_ca: Option<PathBuf>,
}

pub async fn run(args: EchoArgs) -> anyhow::Result<ExitCode> {
    let tls = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => {
            let read = |p: &PathBuf| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
            let client_ca = args.client_ca.as_ref().map(read).transpose()?;
            Some(server_config(&read(cert)?, &read(key)?, client_ca.as_deref()).context("TLS setup")?)
        }
        _ => None,
    };
    let scheme = if tls.is_some() { "wss" } else { "ws" };
    let server = EchoServer::bind(&args.listen, tls)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    eprintln!("echo server listening on {scheme}://{}", server.local_addr()?);
    server.run().await;
    Ok(ExitCode::SUCCESS)
}
