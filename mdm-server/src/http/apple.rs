//! The device listener's routes for iPhones: SCEP (`/scep`, RFC 8894) where an iPhone gets its
//! certificate, and Apple's MDM check-in (`/mdm/checkin`) and connect (`/mdm/connect`)
//! endpoints. A check-in names its sender by the `Mdm-Signature` header (a detached CMS
//! signature over the body) and/or the TLS client certificate; either way the certificate
//! must be one the device CA issued: live in the database now, or for `Authenticate` waiting
//! there since SCEP issued it.
//!
//! A broken or missing signature answers 400, never 401: a 401 makes an iPhone drop its
//! enrollment, which a garbled message must not cause.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::Router;
use base64::Engine;
use enrollment::scep::{self, FailInfo, MessageType};
use profiles::apple_checkin::{read_plist, CheckinMessage, ConnectMessage, PlistError};
use serde::Deserialize;
use std::net::IpAddr;

use super::{ApiError, AppState, Peer};
use crate::flows;
use crate::store::DeviceSession;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/scep", get(scep_get).post(scep_post))
        .route("/mdm/checkin", put(checkin))
        .route("/mdm/connect", put(connect))
}

#[derive(Debug, Deserialize)]
struct ScepQuery {
    operation: String,
    message: Option<String>,
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "Internal error",
        e.to_string(),
    )
}

async fn scep_get(
    State(state): State<AppState>,
    peer: Peer,
    Query(q): Query<ScepQuery>,
) -> Result<Response, ApiError> {
    match q.operation.as_str() {
        "GetCACaps" => Ok((
            [(header::CONTENT_TYPE, "text/plain")],
            scep::CA_CAPS.join("\n"),
        )
            .into_response()),
        "GetCACert" => {
            let ra = state.ca.scep_ra().map_err(internal)?;
            let certs = scep::ca_certificates(&ra, &state.ca.chain_der()).map_err(internal)?;
            Ok((
                [(header::CONTENT_TYPE, "application/x-x509-ca-ra-cert")],
                certs,
            )
                .into_response())
        }
        "PKIOperation" => {
            // A query string turns `+` into a space; base64 has no spaces.
            let text = q.message.unwrap_or_default().replace(' ', "+");
            let der = base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|_| {
                    ApiError::bad_request(
                        "scep-message-invalid",
                        "the message parameter is not base64",
                    )
                })?;
            pki_operation(&state, peer.addr.ip(), &der).await
        }
        other => Err(unknown_operation(other)),
    }
}

async fn scep_post(
    State(state): State<AppState>,
    peer: Peer,
    Query(q): Query<ScepQuery>,
    body: Bytes,
) -> Result<Response, ApiError> {
    match q.operation.as_str() {
        "PKIOperation" => pki_operation(&state, peer.addr.ip(), &body).await,
        other => Err(unknown_operation(other)),
    }
}

fn unknown_operation(operation: &str) -> ApiError {
    ApiError::bad_request(
        "scep-operation-unknown",
        format!("unknown SCEP operation '{operation}'; this server answers GetCACaps, GetCACert and PKIOperation"),
    )
}

/// Reads a PKIOperation and answers a CertRep: SUCCESS with the certificate, or FAILURE with
/// why. Only a message that cannot be answered at all gets a 400.
async fn pki_operation(state: &AppState, source: IpAddr, der: &[u8]) -> Result<Response, ApiError> {
    let request = match scep::read_request(der) {
        Ok(r) => r,
        Err(e) => {
            flows::apple::refused_message(state, source, "device.scep_refused", &e.to_string())
                .await?;
            return Err(ApiError::bad_request("scep-message-invalid", e.to_string()));
        }
    };
    let ra = state.ca.scep_ra().map_err(internal)?;
    let outcome = answer(state, source, &request, &ra).await?;
    let reply = match outcome {
        Ok(certificate) => request.success(&ra, &certificate),
        Err(why) => request.failure(&ra, why),
    }
    .map_err(internal)?;
    Ok(([(header::CONTENT_TYPE, "application/x-pki-message")], reply).into_response())
}

/// The certificate a request earns (DER), or the FAILURE's `failInfo`.
async fn answer(
    state: &AppState,
    source: IpAddr,
    request: &scep::ScepRequest,
    ra: &scep::RegistrationAuthority,
) -> Result<Result<Vec<u8>, FailInfo>, ApiError> {
    let refuse = |why: FailInfo, reason: String| async move {
        flows::apple::refused_message(state, source, "device.scep_refused", &reason).await?;
        Ok::<_, ApiError>(Err(why))
    };
    let opened = match request.open(ra) {
        Ok(o) => o,
        Err((why, e)) => return refuse(why, format!("{}: {e}", why.as_str())).await,
    };
    let csr = match enrollment::check_csr(&opened.csr_der) {
        Ok(csr) => csr,
        Err(e) => return refuse(FailInfo::BadRequest, e.to_string()).await,
    };
    let issued = match request.message_type {
        Some(MessageType::PkcsReq) => {
            if !csr.has_key(&opened.signer_spki_der) {
                return refuse(
                    FailInfo::BadMessageCheck,
                    "the request is not signed by the key in its CSR".into(),
                )
                .await;
            }
            flows::apple::scep_enroll(state, source, &csr).await
        }
        Some(MessageType::RenewalReq) => {
            // A renewal is signed by the certificate being renewed: it must be one this CA
            // issued and still live.
            if !state.ca.issued_here(&opened.signer_der) {
                return refuse(
                    FailInfo::BadCertId,
                    "a renewal signed by a certificate from another CA".into(),
                )
                .await;
            }
            let print = enrollment::fingerprint(&opened.signer_der);
            match flows::enrollment::identify(state, source, &print).await {
                Ok(session) => {
                    flows::enrollment::renew_checked(state, &session, source, &csr).await
                }
                Err(e) => Err(e),
            }
        }
        _ => return refuse(FailInfo::BadRequest, "an unsupported message type".into()).await,
    };
    match issued {
        Ok(certificate) => Ok(Ok(certificate.der)),
        // The flow audited its refusal (an unknown, used or expired challenge, a weak key).
        Err(flows::FlowError::Store(e)) => Err(e.into()),
        Err(_) => Ok(Err(FailInfo::BadRequest)),
    }
}

fn signature_problem(detail: impl Into<String>) -> ApiError {
    ApiError::bad_request("mdm-signature-invalid", detail)
}

/// The fingerprint of the certificate that vouches for a message: the one that made its
/// `Mdm-Signature`, or else the TLS client certificate. A signature must verify over the body
/// (the store then says whether the device CA issued its certificate); when both are present
/// they must agree.
async fn sender(
    state: &AppState,
    peer: &Peer,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<String, ApiError> {
    let Some(signature) = headers.get("mdm-signature") else {
        return peer
            .fingerprint
            .as_deref()
            .map(str::to_string)
            .ok_or_else(|| {
                signature_problem(
                "the message has no Mdm-Signature header and the connection no client certificate",
            )
            });
    };
    let source = peer.addr.ip();
    let refuse = |reason: String| async move {
        flows::apple::refused_message(state, source, "device.refused", &reason).await?;
        Err::<String, ApiError>(signature_problem(reason))
    };
    // Folded lines are taken apart again; a header without whitespace (the usual one) is
    // decoded as it came.
    let raw = signature.as_bytes();
    let text: std::borrow::Cow<'_, [u8]> = if raw.iter().any(u8::is_ascii_whitespace) {
        raw.iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect::<Vec<u8>>()
            .into()
    } else {
        raw.into()
    };
    let Ok(der) = base64::engine::general_purpose::STANDARD.decode(text) else {
        return refuse("the Mdm-Signature header is not base64".into()).await;
    };
    let signed = match enrollment::envelope::read_signed(&der) {
        Ok(s) => s,
        Err(e) => return refuse(format!("Mdm-Signature: {e}")).await,
    };
    let certificate = match enrollment::envelope::verify_signer(&signed, body) {
        Ok((_, cert)) => enrollment::envelope::certificate_der(cert).map_err(internal)?,
        Err(e) => return refuse(format!("Mdm-Signature: {e}")).await,
    };
    // Whether the device CA issued it is not checked here: only certificates it issued are in
    // the database, and the sender is looked up there next (an unknown one is refused with 401).
    let print = enrollment::fingerprint(&certificate);
    if peer.fingerprint.as_deref().is_some_and(|tls| tls != print) {
        return refuse("the TLS certificate and the message's signature differ".into()).await;
    }
    Ok(print)
}

fn plist_problem(e: PlistError) -> ApiError {
    match e {
        PlistError::TooLarge => super::problem::body_too_large(),
        other => ApiError::bad_request("plist-invalid", other.to_string()),
    }
}

async fn identified(state: &AppState, peer: &Peer, print: &str) -> Result<DeviceSession, ApiError> {
    Ok(flows::enrollment::identify(state, peer.addr.ip(), print).await?)
}

/// `Authenticate`, `TokenUpdate` and `CheckOut`; an empty 200 when done.
async fn checkin(
    State(state): State<AppState>,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let print = sender(&state, &peer, &headers, &body).await?;
    let message: CheckinMessage = read_plist(&body).map_err(plist_problem)?;
    let source = peer.addr.ip();
    match message {
        CheckinMessage::Authenticate(a) => {
            flows::apple::authenticate(&state, source, &print, &a).await?;
        }
        CheckinMessage::TokenUpdate(t) => {
            let session = identified(&state, &peer, &print).await?;
            flows::apple::token_update(&state, &session, &t).await?;
        }
        CheckinMessage::CheckOut(c) => {
            let session = identified(&state, &peer, &print).await?;
            flows::apple::check_out(&state, source, &session, &c.udid).await?;
        }
        // Apple's answer for a check-in the server does not offer (user channels, bootstrap
        // tokens, declarative management).
        CheckinMessage::Other => {
            return Err(ApiError::new(
                StatusCode::GONE,
                "checkin-message-not-offered",
                "Not offered",
                "this server does not offer that check-in message",
            ))
        }
    }
    Ok(StatusCode::OK)
}

/// The phone answers its last command and asks for the next: an empty 200 when nothing waits,
/// else the command as Apple's plist.
async fn connect(
    State(state): State<AppState>,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let print = sender(&state, &peer, &headers, &body).await?;
    let message: ConnectMessage = read_plist(&body).map_err(plist_problem)?;
    let session = identified(&state, &peer, &print).await?;
    match flows::apple_connect::connect(&state, &session, peer.addr, &message).await? {
        Some(command) => Ok((
            [(header::CONTENT_TYPE, "application/xml; charset=utf-8")],
            command,
        )
            .into_response()),
        None => Ok(StatusCode::OK.into_response()),
    }
}
