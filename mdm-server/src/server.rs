//! Starting the server: open and migrate the store, build the shared state, listen.

use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::config::Config;
use crate::http::{self, AppState};
use crate::state::device_lookups::DeviceLookups;
use crate::store::{self, Store};

/// How to start: demo mode (no second factor, demo data) and which clock to use.
#[derive(Debug, Clone)]
pub struct StartOptions {
    pub demo: bool,
    pub clock: Clock,
}

impl Default for StartOptions {
    fn default() -> Self {
        StartOptions {
            demo: false,
            clock: Clock::System,
        }
    }
}

/// Opens the configured database, applies migrations and makes sure the operator exists.
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    let store = store::open(&config.database_url()).await?;
    store.migrate().await?;
    Ok(store)
}

pub async fn build_state(config: Config, options: StartOptions) -> anyhow::Result<AppState> {
    let device_url = config
        .device_url
        .clone()
        .unwrap_or_else(|| format!("https://{}", config.device_listen));
    build_state_for(config, options, device_url).await
}

const CA_FACT: &str = "device_ca_root";

/// The server's state, with the device listener reachable at `device_url`.
pub async fn build_state_for(
    config: Config,
    options: StartOptions,
    device_url: String,
) -> anyhow::Result<AppState> {
    let store = open_store(&config).await?;
    let policy_board = crate::state::policy_board::PolicyBoard::default();
    policy_board.refresh(store.as_ref()).await?;
    let command_board = crate::state::command_board::CommandBoard::default();
    command_board.refresh(store.as_ref()).await?;
    let operator = store
        .ensure_operator(&config.operator_name, options.clock.now())
        .await?;
    let ca =
        ::enrollment::DeviceCa::load_or_create(&config.data_dir.join("ca"), &config.operator_name)?;
    // Nodes sharing one database must share one CA, or phones would be refused by some of them.
    match store.installation_fact(CA_FACT).await? {
        None => store.set_installation_fact(CA_FACT, &ca.root_fingerprint()).await?,
        Some(known) if known == ca.root_fingerprint() => {}
        Some(known) => anyhow::bail!(
            "the device CA in {} (root {}) is not the one this database's phones trust (root {known}); \
             copy DATA_DIR/ca from the first node",
            config.data_dir.join("ca").display(),
            ca.root_fingerprint()
        ),
    }
    Ok(AppState {
        config: Arc::new(config),
        clock: options.clock,
        demo: options.demo,
        operator_id: operator.id,
        throttle: Default::default(),
        sessions: Default::default(),
        metrics: Arc::new(Default::default()),
        ca: Arc::new(ca),
        device_url,
        checkin_times: Default::default(),
        device_lookups: Arc::new(DeviceLookups::new(store.clone())),
        notice_board: Default::default(),
        notice_wake: Default::default(),
        policy_board,
        command_board,
        profile_ledger: Default::default(),
        store,
    })
}

/// The device listener's TLS set-up: the server certificate from the device CA, and client
/// certificates verified against that CA when presented. Enrollment works without one; the
/// other device routes demand one (and check it against revocation on every request).
pub fn device_tls(state: &AppState) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(state.ca.chain_pem().as_bytes()) {
        roots.add(cert?)?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()?;
    let certificate =
        ListenerCertificate::new(state.ca.clone(), state.config.device_hostnames.clone())?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(certificate));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The device listener's own certificate, from the device CA, made again well before it runs
/// out (it is valid 90 days), so a node can run for years without a restart.
#[derive(Debug)]
struct ListenerCertificate {
    ca: Arc<::enrollment::DeviceCa>,
    hostnames: Vec<String>,
    current: std::sync::RwLock<(Arc<rustls::sign::CertifiedKey>, std::time::Instant)>,
}

const LISTENER_CERTIFICATE_RENEWAL: std::time::Duration =
    std::time::Duration::from_secs(30 * 86_400);

impl ListenerCertificate {
    fn new(ca: Arc<::enrollment::DeviceCa>, hostnames: Vec<String>) -> anyhow::Result<Self> {
        let key = Self::issue(&ca, &hostnames)?;
        Ok(ListenerCertificate {
            ca,
            hostnames,
            current: std::sync::RwLock::new((
                key,
                std::time::Instant::now() + LISTENER_CERTIFICATE_RENEWAL,
            )),
        })
    }

    fn issue(
        ca: &::enrollment::DeviceCa,
        hostnames: &[String],
    ) -> anyhow::Result<Arc<rustls::sign::CertifiedKey>> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let (chain_pem, key_pem) = ca.issue_server_certificate(hostnames)?;
        let chain =
            CertificateDer::pem_slice_iter(chain_pem.as_bytes()).collect::<Result<Vec<_>, _>>()?;
        let key = rustls::crypto::ring::sign::any_supported_type(&PrivateKeyDer::from_pem_slice(
            key_pem.as_bytes(),
        )?)?;
        Ok(Arc::new(rustls::sign::CertifiedKey::new(chain, key)))
    }
}

impl rustls::server::ResolvesServerCert for ListenerCertificate {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        let now = std::time::Instant::now();
        {
            let current = self.current.read().unwrap_or_else(|p| p.into_inner());
            if current.1 > now {
                return Some(current.0.clone());
            }
        }
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        if current.1 <= now {
            match Self::issue(&self.ca, &self.hostnames) {
                Ok(key) => *current = (key, now + LISTENER_CERTIFICATE_RENEWAL),
                Err(e) => {
                    tracing::error!(error = %e, "could not renew the device listener's certificate")
                }
            }
        }
        Some(current.0.clone())
    }
}

/// How long a device connection may stay quiet, between requests or within one.
const DEVICE_IDLE: std::time::Duration = std::time::Duration::from_secs(30);

/// Serves the device routes over TLS on `listener` until `shutdown` completes. Each
/// connection's client certificate rides along on its requests.
pub async fn serve_devices(
    state: AppState,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(device_tls(&state)?);
    let limits = http::device_connection::Limits {
        idle: DEVICE_IDLE,
        max_head_bytes: 16 * 1024,
        max_body_bytes: state.config.max_body_bytes,
    };
    let app = http::device_router(state);
    tokio::pin!(shutdown);
    loop {
        let (tcp, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "device listener accept failed");
                    continue;
                }
            },
            () = &mut shutdown => return Ok(()),
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            // A failed handshake (another CA's certificate, plain HTTP, a scanner) ends here.
            let Some((tls, peer)) = device_handshake(&acceptor, tcp, addr).await else {
                return;
            };
            http::device_connection::serve(tls, app, peer, limits).await;
        });
    }
}

/// A device connection's TLS handshake, and who is on the other end. The stream goes on the
/// heap: tens of thousands of phones keep a connection open, and a task that held the stream
/// in place would hold a second copy's room for the whole connection.
async fn device_handshake(
    acceptor: &tokio_rustls::TlsAcceptor,
    tcp: tokio::net::TcpStream,
    addr: SocketAddr,
) -> Option<(
    Box<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>,
    http::device_connection::Peer,
)> {
    let tls = match tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(tcp))
        .await
    {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(%addr, error = %e, "device TLS handshake refused");
            return None;
        }
        Err(_) => return None,
    };
    let peer = http::device_connection::Peer {
        addr,
        fingerprint: tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|c| ::enrollment::fingerprint(c).into()),
    };
    Some((Box::new(tls), peer))
}

/// A server listening in the background; dropping it does not stop it, `stop` does.
#[derive(Debug)]
pub struct RunningServer {
    pub addr: SocketAddr,
    pub device_addr: SocketAddr,
    pub state: AppState,
    stop: Option<watch::Sender<bool>>,
    tasks: Vec<JoinHandle<anyhow::Result<()>>>,
}

impl RunningServer {
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        for task in self.tasks.drain(..) {
            task.await??;
        }
        Ok(())
    }
}

/// Serves the API on `listener` until `shutdown` completes.
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = http::router(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Binds both listeners and works out the device URL: the configured one, or the bound address
/// (so port 0 works in tests).
pub async fn bind(config: &Config) -> anyhow::Result<(TcpListener, TcpListener, String)> {
    let api = TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    let devices = TcpListener::bind(config.device_listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.device_listen))?;
    let url = match &config.device_url {
        Some(url) => url.clone(),
        None => format!("https://{}", devices.local_addr()?),
    };
    Ok((api, devices, url))
}

/// Starts a server on the configured addresses (port 0 picks free ones) in the background.
pub async fn start(config: Config, options: StartOptions) -> anyhow::Result<RunningServer> {
    let (api, devices, device_url) = bind(&config).await?;
    let state = build_state_for(config, options, device_url).await?;
    let addr = api.local_addr()?;
    let device_addr = devices.local_addr()?;
    let (stop, stopped) = watch::channel(false);
    let until_stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let api_task = tokio::spawn({
        let state = state.clone();
        let shutdown = until_stopped(stopped.clone());
        async move { Ok(serve(state, api, shutdown).await?) }
    });
    let device_task = tokio::spawn(serve_devices(
        state.clone(),
        devices,
        until_stopped(stopped.clone()),
    ));
    let mut tasks = vec![api_task, device_task];
    tasks.extend(spawn_background(&state, stopped)?);
    Ok(RunningServer {
        addr,
        device_addr,
        state,
        stop: Some(stop),
        tasks,
    })
}

/// The node's background work: writing check-in times, and the notice scheduler and outbox
/// workers. Each ends when `stopped` says so.
fn spawn_background(
    state: &AppState,
    stopped: watch::Receiver<bool>,
) -> anyhow::Result<Vec<JoinHandle<anyhow::Result<()>>>> {
    let channels = crate::notify::Channels::from_config(&state.config.notifications)?;
    let notices =
        crate::jobs::notices::NoticeJobs::new(state, channels, crate::jobs::notices::node_name());
    let times = state
        .checkin_times
        .clone()
        .run(state.store.clone(), stopped.clone());
    let policies = state
        .policy_board
        .clone()
        .run(state.store.clone(), stopped.clone());
    let sweeper = crate::jobs::commands::CommandSweeper::new(
        state.store.clone(),
        state.clock.clone(),
        state.config.command_retention_days,
    );
    let sweeping = stopped.clone();
    let compliance = crate::jobs::compliance::ComplianceWatch::new(state);
    let watching = stopped.clone();
    let leasing = crate::jobs::leasing::LeasingWatch::new(state);
    let leasing_stop = stopped.clone();
    let commands = state
        .command_board
        .clone()
        .run(state.store.clone(), stopped.clone());
    let pusher = crate::jobs::push::Pusher::new(state);
    let pushing = stopped.clone();
    let inventory = crate::jobs::inventory::InventoryWatch::new(state);
    let inventory_stop = stopped.clone();
    Ok(vec![
        tokio::spawn(async move {
            inventory.run(inventory_stop).await;
            Ok(())
        }),
        tokio::spawn(async move {
            pusher.run(pushing).await;
            Ok(())
        }),
        tokio::spawn(async move {
            sweeper.run(sweeping).await;
            Ok(())
        }),
        tokio::spawn(async move {
            compliance.run(watching).await;
            Ok(())
        }),
        tokio::spawn(async move {
            leasing.run(leasing_stop).await;
            Ok(())
        }),
        tokio::spawn(async move {
            commands.await;
            Ok(())
        }),
        tokio::spawn(async move {
            policies.await;
            Ok(())
        }),
        tokio::spawn(async move {
            times.await;
            Ok(())
        }),
        tokio::spawn(async move {
            notices.run(stopped).await;
            Ok(())
        }),
    ])
}

/// Runs both listeners until Ctrl-C.
pub async fn run_until_interrupted(
    state: AppState,
    api: TcpListener,
    devices: TcpListener,
) -> anyhow::Result<()> {
    let (stop, stopped) = watch::channel(false);
    let until_stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        let _ = stop.send(true);
    });
    let device_task = tokio::spawn(serve_devices(
        state.clone(),
        devices,
        until_stopped(stopped.clone()),
    ));
    let background = spawn_background(&state, stopped.clone())?;
    serve(state, api, until_stopped(stopped)).await?;
    for task in background {
        task.await??;
    }
    device_task.await?
}
