//! An HTTPS server on loopback with its own CA, for the stand-ins of services that only speak
//! TLS (an OpenID Connect issuer, Entra ID). It runs on its own thread and runtime: the caller's
//! runtime may be blocked (a test waiting for kubectl) exactly when a client calls it.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::future::BoxFuture;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
};

/// What answers each request.
pub type Handler =
    Arc<dyn Fn(Request<Incoming>) -> BoxFuture<'static, Response<Full<Bytes>>> + Send + Sync>;

/// A running server. Dropping it stops it.
pub struct TlsServer {
    /// `https://127.0.0.1:<port>`.
    pub base: String,
    /// The CA that signed its certificate, PEM.
    pub ca_pem: String,
    down: Arc<AtomicBool>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl std::fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsServer")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl TlsServer {
    /// Starts a server on a free loopback port, answering with `handler`.
    pub fn start(handler: Handler) -> anyhow::Result<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
        let mut server_params = CertificateParams::new(vec!["127.0.0.1".to_owned()])?;
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_key = KeyPair::generate()?;
        let server_cert = server_params.signed_by(&server_key, &ca)?;

        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let base = format!("https://127.0.0.1:{}", listener.local_addr()?.port());
        let tls = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(
                vec![server_cert.der().clone()],
                rustls_pki_types::PrivateKeyDer::Pkcs8(server_key.serialize_der().into()),
            )?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let down = Arc::new(AtomicBool::new(false));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let is_down = down.clone();
        std::thread::spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                let serve = async {
                    while let Ok((stream, _)) = listener.accept().await {
                        if is_down.load(Ordering::SeqCst) {
                            drop(stream); // as unreachable as a closed port, for a client
                            continue;
                        }
                        let (acceptor, handler) = (acceptor.clone(), handler.clone());
                        tokio::spawn(async move {
                            let Ok(stream) = acceptor.accept(stream).await else {
                                return;
                            };
                            // One request per connection: a server set down is down at once,
                            // not only for the clients that open a new connection.
                            let service = service_fn(move |request| {
                                let answer = handler(request);
                                async move {
                                    let mut answer = answer.await;
                                    answer.headers_mut().insert(
                                        hyper::header::CONNECTION,
                                        hyper::header::HeaderValue::from_static("close"),
                                    );
                                    Ok::<_, Infallible>(answer)
                                }
                            });
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                                .await;
                        });
                    }
                };
                tokio::select! {
                    () = serve => {}
                    _ = stopped => {}
                }
            });
        });
        Ok(TlsServer {
            base,
            ca_pem: ca.pem(),
            down,
            stop: Some(stop),
        })
    }

    /// Drops every new connection unanswered (`true`), or serves again (`false`). Every answer
    /// closes its connection, so no client keeps one open past this.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }
}

/// A JSON answer.
pub fn json(status: u16, body: &serde_json::Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap_or_default()
}
