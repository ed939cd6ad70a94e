//! HTTP/1.1 on the device listener's TLS connections.
//!
//! Why not hyper here (the API listener uses it, through axum): hyper keeps an 8 KiB read
//! buffer and an 8 KiB write buffer for the whole life of every connection, with no setting to
//! shrink them. Phones keep their connection open between requests, so 10,000 phones would
//! hold 160 MiB in idle buffers alone, most of the 200 MB the server may use. Agents send small
//! requests with a `Content-Length`, so this loop parses request heads with `httparse` (the
//! parser hyper itself uses), holds a buffer only while a request or a response is in flight,
//! and hands every request to the same axum router. What it does not speak (chunked request
//! bodies, upgrades, HTTP/2) gets a clear refusal and the connection is closed.

use axum::body::{Body, Bytes};
use axum::extract::FromRequestParts;
use axum::http::header::{CONNECTION, CONTENT_LENGTH, DATE, EXPECT, TRANSFER_ENCODING};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use axum::response::IntoResponse;
use axum::Router;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tower::ServiceExt;

use super::problem::{body_too_large, ApiError};

/// Most header lines a request may have.
const MAX_HEADERS: usize = 48;
/// How much is read at a time while a request head arrives.
const READ_CHUNK: usize = 2048;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The longest wait for the next request on an open connection, for any part of a
    /// request to arrive, and for a response to be taken.
    pub idle: Duration,
    /// The largest request head.
    pub max_head_bytes: usize,
    /// The largest request body.
    pub max_body_bytes: usize,
}

/// A request as read off the connection.
struct Incoming {
    request: Request<Body>,
    keep_alive: bool,
}

/// What a request head says: the request (its body still empty), whether the connection stays
/// open after it, how long its body is, and whether the device waits for `100 Continue`.
struct Head {
    request: Request<Body>,
    keep_alive: bool,
    content_length: usize,
    expects_continue: bool,
}

/// Why a connection ends.
enum Stop {
    /// The device closed it, went quiet, or the network failed: nothing more to say.
    Quietly,
    /// The request cannot be served; answer this and close.
    Refuse(ApiError),
}

/// Serves requests on one connection until the device closes it, goes quiet for
/// `limits.idle`, asks to close, or sends something this loop refuses.
pub async fn serve<IO>(mut io: IO, app: Router, peer: Peer, limits: Limits)
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    // Bytes of a next request that came with the previous one (pipelining); usually empty.
    let mut carried = Vec::new();
    loop {
        let incoming = match read_request(&mut io, &mut carried, &limits).await {
            Ok(incoming) => incoming,
            Err(Stop::Quietly) => return,
            Err(Stop::Refuse(problem)) => {
                let _ = Box::pin(respond(&mut io, problem.into_response(), false, &limits)).await;
                return;
            }
        };
        let mut request = incoming.request;
        request.extensions_mut().insert(peer.clone());
        // A HEAD answer's length would not match what follows it, so the connection ends there.
        let keep_alive = incoming.keep_alive && request.method() != Method::HEAD;
        // What a request needs while it is served lives on the heap for that time only: the
        // connection's task stays small while it waits for the next request, which is most of
        // a phone's connection's life.
        let response = match Box::pin(app.clone().oneshot(request)).await {
            Ok(response) => response,
            Err(infallible) => match infallible {},
        };
        if Box::pin(respond(&mut io, response, keep_alive, &limits))
            .await
            .is_err()
            || !keep_alive
        {
            let _ = io.shutdown().await;
            return;
        }
    }
}

async fn read_some<IO: AsyncRead + Unpin>(
    io: &mut IO,
    buf: &mut Vec<u8>,
    limits: &Limits,
) -> Result<(), Stop> {
    match tokio::time::timeout(limits.idle, io.read_buf(buf)).await {
        Ok(Ok(n)) if n > 0 => Ok(()),
        _ => Err(Stop::Quietly),
    }
}

fn bad_request(detail: impl Into<String>) -> Stop {
    Stop::Refuse(ApiError::bad_request("bad-request", detail))
}

/// Reads the next request: waits for its head (where an idle connection spends its time), then
/// reads its body on the heap, so the wait itself holds little.
async fn read_request<IO>(
    io: &mut IO,
    carried: &mut Vec<u8>,
    limits: &Limits,
) -> Result<Incoming, Stop>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let (head, body_start) = read_head(io, carried, limits).await?;
    Box::pin(read_body(io, head, body_start, carried, limits)).await
}

/// Reads until a whole request head has come; returns it and the bytes that followed it.
async fn read_head<IO>(
    io: &mut IO,
    carried: &mut Vec<u8>,
    limits: &Limits,
) -> Result<(Head, Vec<u8>), Stop>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = std::mem::take(carried);
    loop {
        if !buf.is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut parsed = httparse::Request::new(&mut headers);
            match parsed.parse(&buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let head = head(&parsed, limits)?;
                    return Ok((head, buf.split_off(len)));
                }
                Ok(httparse::Status::Partial) => {}
                Err(httparse::Error::TooManyHeaders) => {
                    return Err(Stop::Refuse(head_too_large()));
                }
                Err(e) => return Err(bad_request(format!("malformed HTTP/1.1 request: {e}"))),
            }
        }
        if buf.len() >= limits.max_head_bytes {
            return Err(Stop::Refuse(head_too_large()));
        }
        buf.reserve(READ_CHUNK);
        read_some(io, &mut buf, limits).await?;
    }
}

/// The request with this head and its whole body, of which `body` is what has come so far.
/// Bytes of a next request that came along are left in `carried`.
async fn read_body<IO>(
    io: &mut IO,
    head: Head,
    mut body: Vec<u8>,
    carried: &mut Vec<u8>,
    limits: &Limits,
) -> Result<Incoming, Stop>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let Head {
        mut request,
        keep_alive,
        content_length,
        expects_continue,
    } = head;
    if body.len() < content_length {
        if expects_continue {
            let interim = b"HTTP/1.1 100 Continue\r\n\r\n";
            if io.write_all(interim).await.is_err() || io.flush().await.is_err() {
                return Err(Stop::Quietly);
            }
        }
        body.reserve_exact(content_length - body.len());
        while body.len() < content_length {
            read_some(io, &mut body, limits).await?;
        }
    }
    if body.len() > content_length {
        *carried = body.split_off(content_length);
    }
    *request.body_mut() = Body::from(Bytes::from(body));
    Ok(Incoming {
        request,
        keep_alive,
    })
}

fn head_too_large() -> ApiError {
    ApiError::new(
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "header-too-large",
        "Request head too large",
        "the request line and headers are larger than the device listener accepts",
    )
}

/// Reads a parsed request head, refusing what the device listener does not serve.
fn head(parsed: &httparse::Request<'_, '_>, limits: &Limits) -> Result<Head, Stop> {
    let version = match parsed.version {
        Some(1) => Version::HTTP_11,
        _ => Version::HTTP_10,
    };
    let method = Method::from_bytes(parsed.method.unwrap_or_default().as_bytes())
        .map_err(|_| bad_request("the request method is not valid"))?;
    let uri: Uri = parsed
        .path
        .unwrap_or_default()
        .parse()
        .map_err(|_| bad_request("the request target is not a valid path"))?;
    if !uri.path().starts_with('/') || uri.authority().is_some() {
        return Err(bad_request("the request target must be a path"));
    }
    let mut request = Request::new(Body::empty());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    let headers = request.headers_mut();
    for header in parsed.headers.iter() {
        let name = HeaderName::from_bytes(header.name.as_bytes())
            .map_err(|_| bad_request(format!("the header name {:?} is not valid", header.name)))?;
        let value = HeaderValue::from_bytes(header.value)
            .map_err(|_| bad_request(format!("the value of header {name} is not valid")))?;
        headers.append(name, value);
    }
    if headers.contains_key(TRANSFER_ENCODING) {
        return Err(Stop::Refuse(ApiError::new(
            StatusCode::LENGTH_REQUIRED,
            "length-required",
            "Content-Length required",
            "the device listener takes request bodies with a Content-Length, not chunked",
        )));
    }
    let mut lengths = headers.get_all(CONTENT_LENGTH).iter().map(|v| {
        v.to_str()
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<usize>().ok())
    });
    let content_length = match lengths.next() {
        None => 0,
        Some(first) => {
            let first = first.ok_or_else(|| bad_request("Content-Length is not a number"))?;
            if lengths.any(|other| other != Some(first)) {
                return Err(bad_request(
                    "the request has differing Content-Length headers",
                ));
            }
            first
        }
    };
    if content_length > limits.max_body_bytes {
        return Err(Stop::Refuse(body_too_large()));
    }
    let connection = |token: &str| {
        headers.get_all(CONNECTION).iter().any(|v| {
            v.to_str()
                .unwrap_or_default()
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case(token))
        })
    };
    let keep_alive = match version {
        Version::HTTP_11 => !connection("close"),
        _ => connection("keep-alive"),
    };
    let expects_continue = match headers.get(EXPECT) {
        None => false,
        Some(v) if v.as_bytes().eq_ignore_ascii_case(b"100-continue") => true,
        Some(_) => {
            return Err(Stop::Refuse(ApiError::new(
                StatusCode::EXPECTATION_FAILED,
                "expectation-failed",
                "Expectation not supported",
                "the only expectation the device listener meets is 100-continue",
            )))
        }
    };
    Ok(Head {
        request,
        keep_alive,
        content_length,
        expects_continue,
    })
}

/// Writes a response in one piece. Every answer of the device routes is small and whole, so
/// the body is gathered first and sent with its length.
async fn respond<IO>(
    io: &mut IO,
    response: Response<Body>,
    keep_alive: bool,
    limits: &Limits,
) -> std::io::Result<()>
where
    IO: AsyncWrite + Unpin,
{
    let (parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(std::io::Error::other)?;
    let bodiless =
        parts.status == StatusCode::NO_CONTENT || parts.status == StatusCode::NOT_MODIFIED;
    let mut out = Vec::with_capacity(160 + parts.headers.len() * 40 + body.len());
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(parts.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        if [CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING, DATE].contains(name) {
            continue;
        }
        line(&mut out, name.as_str(), value.as_bytes());
    }
    line(
        &mut out,
        "date",
        httpdate::fmt_http_date(std::time::SystemTime::now()).as_bytes(),
    );
    if !bodiless {
        line(
            &mut out,
            "content-length",
            body.len().to_string().as_bytes(),
        );
    }
    if !keep_alive {
        line(&mut out, "connection", b"close");
    }
    out.extend_from_slice(b"\r\n");
    if !bodiless {
        out.extend_from_slice(&body);
    }
    let write = async {
        io.write_all(&out).await?;
        io.flush().await
    };
    tokio::time::timeout(limits.idle, write)
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
}

fn line(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// What the TLS handshake established about the peer, put on every request of the connection.
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    /// The SHA-256 fingerprint of the client certificate, if the device presented one:
    /// worked out once per connection, not per request.
    pub fingerprint: Option<std::sync::Arc<str>>,
}

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Peer>().cloned().ok_or_else(|| {
            ApiError::unauthenticated("device routes are served on the device listener only")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::{get, post};
    use tokio::io::DuplexStream;

    const LIMITS: Limits = Limits {
        idle: Duration::from_secs(5),
        max_head_bytes: 4096,
        max_body_bytes: 1024,
    };

    fn app() -> Router {
        Router::new()
            .route("/echo", post(|body: Bytes| async move { body }))
            .route(
                "/peer",
                get(|peer: Peer| async move { peer.addr.to_string() }),
            )
            .route("/empty", post(|| async { StatusCode::NO_CONTENT }))
    }

    /// A connection served by the loop; the returned end is the device's.
    fn connect() -> (DuplexStream, tokio::task::JoinHandle<()>) {
        let (device, server) = tokio::io::duplex(64 * 1024);
        let peer = Peer {
            addr: "192.0.2.7:50000".parse().expect("addr"),
            fingerprint: None,
        };
        let served = tokio::spawn(serve(server, app(), peer, LIMITS));
        (device, served)
    }

    async fn send(device: &mut DuplexStream, bytes: &[u8]) {
        device.write_all(bytes).await.expect("write");
    }

    /// Everything the server sends until it closes the connection.
    async fn read_to_close(device: &mut DuplexStream) -> String {
        let mut all = Vec::new();
        device.read_to_end(&mut all).await.expect("read");
        String::from_utf8(all).expect("utf-8")
    }

    /// Reads exactly `n` complete responses (each with a Content-Length or a 204).
    async fn read_responses(device: &mut DuplexStream, n: usize) -> Vec<(u16, String)> {
        let mut buf = Vec::new();
        let mut answers = Vec::new();
        while answers.len() < n {
            let mut chunk = [0u8; 4096];
            let got = device.read(&mut chunk).await.expect("read");
            assert!(got > 0, "the connection closed after {answers:?}");
            buf.extend_from_slice(&chunk[..got]);
            loop {
                let mut headers = [httparse::EMPTY_HEADER; 16];
                let mut parsed = httparse::Response::new(&mut headers);
                let Ok(httparse::Status::Complete(len)) = parsed.parse(&buf) else {
                    break;
                };
                let length: usize = parsed
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .map(|h| {
                        std::str::from_utf8(h.value)
                            .expect("ascii")
                            .parse()
                            .expect("n")
                    })
                    .unwrap_or(0);
                if buf.len() < len + length {
                    break;
                }
                let code = parsed.code.expect("code");
                answers.push((
                    code,
                    String::from_utf8(buf[len..len + length].to_vec()).expect("utf-8"),
                ));
                buf.drain(..len + length);
            }
        }
        answers
    }

    #[tokio::test]
    async fn pipelined_requests_are_answered_in_order_on_one_connection() {
        let (mut device, _served) = connect();
        send(&mut device, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nfirstPOST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nsecond").await;
        let answers = read_responses(&mut device, 2).await;
        assert_eq!(
            answers,
            vec![(200, "first".to_string()), (200, "second".to_string())]
        );
    }

    #[tokio::test]
    async fn a_body_sent_in_pieces_arrives_whole_and_the_peer_is_known() {
        let (mut device, _served) = connect();
        send(
            &mut device,
            b"POST /echo HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello",
        )
        .await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        send(&mut device, b" world").await;
        send(&mut device, b"GET /peer HTTP/1.1\r\n\r\n").await;
        let answers = read_responses(&mut device, 2).await;
        assert_eq!(answers[0], (200, "hello world".to_string()));
        assert_eq!(answers[1], (200, "192.0.2.7:50000".to_string()));
    }

    #[tokio::test]
    async fn connection_close_is_honoured_after_the_answer() {
        let (mut device, served) = connect();
        send(
            &mut device,
            b"POST /echo HTTP/1.1\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
        )
        .await;
        let all = read_to_close(&mut device).await;
        assert!(all.starts_with("HTTP/1.1 200 OK\r\n"), "{all}");
        assert!(all.contains("connection: close\r\n"), "{all}");
        assert!(all.ends_with("\r\n\r\nok"), "{all}");
        served.await.expect("served");
    }

    #[tokio::test]
    async fn http_1_0_closes_unless_keep_alive_is_asked_for() {
        let (mut device, _served) = connect();
        send(&mut device, b"GET /peer HTTP/1.0\r\n\r\n").await;
        let all = read_to_close(&mut device).await;
        assert!(all.contains("connection: close\r\n"), "{all}");
    }

    #[tokio::test]
    async fn a_no_content_answer_has_no_length_and_the_connection_stays_open() {
        let (mut device, _served) = connect();
        send(
            &mut device,
            b"POST /empty HTTP/1.1\r\n\r\nPOST /echo HTTP/1.1\r\nContent-Length: 1\r\n\r\nx",
        )
        .await;
        let answers = read_responses(&mut device, 2).await;
        assert_eq!(answers, vec![(204, String::new()), (200, "x".to_string())]);
    }

    async fn refused(request: &[u8]) -> String {
        let (mut device, served) = connect();
        send(&mut device, request).await;
        let all = read_to_close(&mut device).await;
        served.await.expect("served");
        assert!(
            all.contains("content-type: application/problem+json"),
            "{all}"
        );
        assert!(all.contains("connection: close\r\n"), "{all}");
        all
    }

    #[tokio::test]
    async fn a_chunked_body_is_refused_with_length_required() {
        let all = refused(
            b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        )
        .await;
        assert!(all.starts_with("HTTP/1.1 411 "), "{all}");
        assert!(all.contains("/problems/length-required"), "{all}");
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_refused_before_it_is_read() {
        let all = refused(b"POST /echo HTTP/1.1\r\nContent-Length: 1025\r\n\r\n").await;
        assert!(all.starts_with("HTTP/1.1 413 "), "{all}");
        assert!(all.contains("/problems/body-too-large"), "{all}");
    }

    #[tokio::test]
    async fn differing_content_lengths_are_refused() {
        let all =
            refused(b"POST /echo HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc")
                .await;
        assert!(all.starts_with("HTTP/1.1 400 "), "{all}");
        assert!(all.contains("differing Content-Length"), "{all}");
    }

    #[tokio::test]
    async fn a_malformed_request_line_is_refused() {
        let all = refused(b"POST /echo HTTP/9\r\n\r\n").await;
        assert!(all.starts_with("HTTP/1.1 400 "), "{all}");
    }

    #[tokio::test]
    async fn a_head_larger_than_the_limit_is_refused() {
        let mut request = b"GET /peer HTTP/1.1\r\nX-Filler: ".to_vec();
        request.extend(std::iter::repeat_n(b'a', 5000));
        let all = refused(&request).await;
        assert!(all.starts_with("HTTP/1.1 431 "), "{all}");
    }

    #[tokio::test]
    async fn expect_100_continue_gets_the_interim_answer_before_the_body() {
        let (mut device, _served) = connect();
        send(
            &mut device,
            b"POST /echo HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n",
        )
        .await;
        let mut interim = [0u8; 25];
        device.read_exact(&mut interim).await.expect("read");
        assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
        send(&mut device, b"data").await;
        assert_eq!(
            read_responses(&mut device, 1).await,
            vec![(200, "data".to_string())]
        );
    }

    #[tokio::test]
    async fn the_loop_ends_when_the_device_hangs_up_mid_request() {
        let (mut device, served) = connect();
        send(
            &mut device,
            b"POST /echo HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc",
        )
        .await;
        drop(device);
        served.await.expect("the loop ended");
    }
}
