//! Starting the server: open and migrate the store, build the shared state, listen.

use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::config::Config;
use crate::http::{self, AppState};
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
    let store = open_store(&config).await?;
    let operator = store
        .ensure_operator(&config.operator_name, options.clock.now())
        .await?;
    Ok(AppState {
        store,
        config: Arc::new(config),
        clock: options.clock,
        demo: options.demo,
        operator_id: operator.id,
        throttle: Default::default(),
        sessions: Default::default(),
        metrics: Arc::new(Default::default()),
    })
}

/// A server listening in the background; dropping it does not stop it, `stop` does.
#[derive(Debug)]
pub struct RunningServer {
    pub addr: SocketAddr,
    pub state: AppState,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    pub async fn stop(mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await.unwrap_or(Ok(()))
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

/// Starts a server on the configured address (port 0 picks a free one) in the background.
pub async fn start(config: Config, options: StartOptions) -> anyhow::Result<RunningServer> {
    let listen = config.listen;
    let state = build_state(config, options).await?;
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(state.clone(), listener, async {
        let _ = stopped.await;
    }));
    Ok(RunningServer {
        addr,
        state,
        stop: Some(stop),
        task,
    })
}
