//! Every error the API returns: an RFC 9457 `application/problem+json` body with a stable
//! `type`, a title, the status and a sentence saying what was wrong.

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::role::Forbidden;
use crate::domain::DomainError;
use crate::flows::{FlowError, RejectionClass};
use crate::store::StoreError;

/// The problem body. `type` values are stable and listed in the README.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Field-by-field reasons, for validation problems.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// The step that must happen first (`wipe-required`: the wipe gate's step as the history
    /// view names it: `not_sent`, `not_acknowledged`, `not_reenrolled`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing_step: Option<String>,
    /// Every bad row of an imported file, by line.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rows: Vec<RowProblem>,
}

/// A bad row of an imported file: its line (the header is line 1) and why.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RowProblem {
    pub line: u64,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    slug: &'static str,
    title: &'static str,
    detail: String,
    errors: Vec<FieldError>,
    retry_after: Option<u64>,
    /// Members only some problems have, boxed so that every `Result<_, ApiError>` stays small.
    extra: Option<Box<Extra>>,
}

#[derive(Debug, Default)]
struct Extra {
    missing_step: Option<&'static str>,
    rows: Vec<RowProblem>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        slug: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        ApiError {
            status,
            slug,
            title,
            detail: detail.into(),
            errors: Vec::new(),
            retry_after: None,
            extra: None,
        }
    }

    pub fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "Not found",
            "no such resource",
        )
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "Method not allowed",
            "this address does not take that method; the API document lists what each address takes",
        )
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", detail)
    }

    pub fn unauthenticated(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "Not logged in",
            detail,
        )
    }

    pub fn bad_request(slug: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, slug, "Bad request", detail)
    }

    pub fn validation(errors: Vec<FieldError>) -> Self {
        let detail = errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join("; ");
        ApiError {
            errors,
            ..Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation",
                "Invalid input",
                detail,
            )
        }
    }

    pub fn with_rows(mut self, rows: Vec<RowProblem>) -> Self {
        self.extra.get_or_insert_default().rows = rows;
        self
    }

    fn with_missing_step(mut self, step: Option<&'static str>) -> Self {
        if step.is_some() {
            self.extra.get_or_insert_default().missing_step = step;
        }
        self
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub fn slug(&self) -> &'static str {
        self.slug
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(detail = %self.detail, "request failed");
        }
        let extra = self.extra.map(|e| *e).unwrap_or_default();
        let body = Problem {
            kind: format!("/problems/{}", self.slug),
            title: self.title.to_string(),
            status: self.status.as_u16(),
            detail: if self.status.is_server_error() {
                "the server could not complete the request; the error is logged".to_string()
            } else {
                self.detail
            },
            errors: self.errors,
            missing_step: extra.missing_step.map(str::to_string),
            rows: extra.rows,
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(seconds) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&seconds.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::not_found(),
            StoreError::Conflict(what) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", "Conflict", what)
            }
            StoreError::Refused(refusal) => ApiError::new(
                StatusCode::CONFLICT,
                refusal.kind,
                "Not possible yet",
                refusal.detail,
            )
            .with_missing_step(refusal.missing_step),
            StoreError::Unsupported(what) => ApiError::new(
                StatusCode::NOT_IMPLEMENTED,
                "unsupported",
                "Not supported here",
                what,
            ),
            other => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
                other.to_string(),
            ),
        }
    }
}

impl From<FlowError> for ApiError {
    fn from(e: FlowError) -> Self {
        match e {
            FlowError::Store(e) => e.into(),
            FlowError::Invalid(fields) => ApiError::validation(
                fields
                    .into_iter()
                    .map(|f| FieldError {
                        field: f.field,
                        message: f.message,
                    })
                    .collect(),
            ),
            FlowError::Rejected(r) => {
                let status = match r.class {
                    RejectionClass::Unauthenticated => StatusCode::UNAUTHORIZED,
                    RejectionClass::NotFound => StatusCode::NOT_FOUND,
                    RejectionClass::Conflict => StatusCode::CONFLICT,
                    RejectionClass::Gone => StatusCode::GONE,
                    RejectionClass::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
                };
                ApiError::new(status, r.kind, r.title, r.detail)
            }
        }
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        ApiError::validation(vec![FieldError {
            field: e.field().to_string(),
            message: e.message().to_string(),
        }])
    }
}

impl From<Forbidden> for ApiError {
    fn from(_: Forbidden) -> Self {
        ApiError::forbidden("your role does not allow this")
    }
}

/// One field's error, as a validation problem.
pub fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::validation(vec![FieldError {
        field: field.to_string(),
        message: message.into(),
    }])
}

/// Collects every field error of a request before answering, so a person fixes them all at once.
#[derive(Debug, Default)]
pub struct Fields(Vec<FieldError>);

impl Fields {
    pub fn check<T>(&mut self, result: Result<T, DomainError>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.0.push(FieldError {
                    field: e.field().to_string(),
                    message: e.message().to_string(),
                });
                None
            }
        }
    }

    /// As `check`, with the error reported at `field`: the request's own name for the value
    /// (`new_password`), or its place in a list (`it_contacts[2].email`).
    pub fn check_at<T>(
        &mut self,
        field: impl Into<String>,
        result: Result<T, DomainError>,
    ) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.0.push(FieldError {
                    field: field.into(),
                    message: e.message().to_string(),
                });
                None
            }
        }
    }

    pub fn push(&mut self, field: &str, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.to_string(),
            message: message.into(),
        });
    }

    pub fn finish(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::validation(self.0))
        }
    }
}

/// Unwraps the values `Fields::check` kept once `finish` has said there were no errors.
pub fn checked<T>(value: Option<T>) -> Result<T, ApiError> {
    value.ok_or_else(|| ApiError::validation(Vec::new()))
}

/// `axum::Json` whose rejections are problem responses.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !json_content_type(req.headers()) {
            return Err(json_rejection(JsonRejection::MissingJsonContentType(
                Default::default(),
            )));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| json_rejection(JsonRejection::BytesRejection(e)))?;
        // The plain parser first: the one that tracks where a body went wrong (for the problem's
        // text) costs more, and is needed only when it did.
        match serde_json::from_slice(&bytes) {
            Ok(v) => Ok(ApiJson(v)),
            Err(e) if e.is_syntax() || e.is_eof() => Err(ApiError::bad_request(
                "malformed-json",
                format!("the body is not valid JSON: {e}"),
            )),
            Err(_) => {
                let mut de = serde_json::Deserializer::from_slice(&bytes);
                match serde_path_to_error::deserialize::<_, T>(&mut de) {
                    Ok(v) => Ok(ApiJson(v)),
                    Err(e) => Err(invalid_input(
                        "invalid-body",
                        "Invalid body",
                        e.path().to_string(),
                        &e.inner().to_string(),
                    )),
                }
            }
        }
    }
}

/// `application/json` or a `+json` type, as `axum::Json` accepts.
fn json_content_type(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn json_rejection(r: JsonRejection) -> ApiError {
    match r {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            "send the body as JSON with Content-Type: application/json",
        ),
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            body_too_large()
        }
        other => ApiError::bad_request("bad-request", other.body_text()),
    }
}

pub fn body_too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body-too-large",
        "Body too large",
        "the request body is larger than the server accepts",
    )
}

/// A body or query that does not have the request's fields and types, as a problem naming the
/// field (`apps[0].version`) and what it must be in plain words, not the JSON parser's
/// ("expected u32", "struct RequiredApp", "line 1 column 67").
fn invalid_input(
    slug: &'static str,
    title: &'static str,
    path: String,
    serde_message: &str,
) -> ApiError {
    let (field, message) = plain_words(&path, serde_message);
    ApiError {
        slug,
        title,
        ..ApiError::validation(vec![FieldError { field, message }])
    }
}

/// serde's wording of a type mismatch, rewritten for a person: the field it concerns and what
/// it must be.
fn plain_words(path: &str, serde_message: &str) -> (String, String) {
    // serde_json appends where in the text it was; the field's name says it better.
    let message = match serde_message.rfind(" at line ") {
        Some(at) => &serde_message[..at],
        None => serde_message,
    };
    let base = if path == "." { "" } else { path };
    let join = |name: &str| {
        if base.is_empty() {
            name.to_string()
        } else {
            format!("{base}.{name}")
        }
    };
    let named = |rest: &str| rest.split('`').nth(1).map(str::to_string);
    let choices = |rest: &str| {
        rest.split_once("expected ")
            .map(|(_, list)| list.replace('`', ""))
            .unwrap_or_default()
    };
    let field = if base.is_empty() {
        "body".to_string()
    } else {
        base.to_string()
    };
    if let Some(rest) = message.strip_prefix("missing field ") {
        let name = named(rest).unwrap_or_default();
        return (join(&name), "is required".into());
    }
    if let Some(rest) = message.strip_prefix("unknown field ") {
        let name = named(rest).unwrap_or_default();
        let known = choices(rest);
        let known = known.strip_prefix("one of ").unwrap_or(&known);
        // The path already ends at the unknown key when the parser got that far.
        let at = if base == name || base.ends_with(&format!(".{name}")) {
            base.to_string()
        } else {
            join(&name)
        };
        let text = if known.is_empty() || known.starts_with("there are no fields") {
            "is not a field here".to_string()
        } else {
            format!("is not a field here; the fields are {known}")
        };
        return (at, text);
    }
    if let Some(rest) = message.strip_prefix("unknown variant ") {
        return (field, format!("must be {}", choices(rest)));
    }
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            if let Some((got, expected)) = rest.split_once(", expected ") {
                return (
                    field,
                    format!("must be {}, not {}", expectation(expected), given(got)),
                );
            }
        }
    }
    if let Some(rest) = message.strip_prefix("invalid length ") {
        if let Some((_, expected)) = rest.split_once(", expected ") {
            return (field, format!("must be {}", expectation(expected)));
        }
    }
    (field, message.to_string())
}

/// What serde says it expected, as a person would say it.
fn expectation(expected: &str) -> String {
    let whole = |max: &str| format!("a whole number from 0 to {max}");
    match expected.trim() {
        "u8" => whole("255"),
        "u16" => whole("65535"),
        "u32" => whole("4294967295"),
        "u64" | "usize" => whole("18446744073709551615"),
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number".into(),
        "f32" | "f64" => "a number".into(),
        "a string" | "string" | "a borrowed string" | "a character" | "char" => "text".into(),
        "a boolean" | "bool" => "true or false".into(),
        "a sequence" | "sequence" => "a list".into(),
        "a map" | "map" => "an object".into(),
        other if other.starts_with("struct ") => "an object".into(),
        other if other.starts_with("a sequence of ") => other.replace("a sequence", "a list"),
        other => other.replace('`', ""),
    }
}

/// What serde says it found, as a person would say it.
fn given(got: &str) -> String {
    let got = got.trim();
    if let Some(text) = got.strip_prefix("string ") {
        return format!("the text {text}");
    }
    for (prefix, words) in [
        ("integer ", "the number "),
        ("floating point ", "the number "),
        ("boolean ", ""),
    ] {
        if let Some(value) = got.strip_prefix(prefix) {
            return format!("{words}{}", value.trim_matches('`'));
        }
    }
    match got {
        "map" => "an object".into(),
        "sequence" => "a list".into(),
        "unit value" | "null" => "null".into(),
        other => other.replace('`', ""),
    }
}

/// `axum::extract::Query` whose rejections are problem responses.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize::<_, T>(de)
            .map(ApiQuery)
            .map_err(|e| {
                let path = e.path().to_string();
                let mut problem = invalid_input(
                    "invalid-query",
                    "Invalid query",
                    path,
                    &e.inner().to_string(),
                );
                problem.status = StatusCode::BAD_REQUEST;
                problem
            })
    }
}

/// `axum::extract::Path` whose rejections are problem responses; a malformed id is a 404,
/// exactly like an id that does not exist.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|_: PathRejection| ApiError::not_found())
    }
}

#[cfg(test)]
mod plain_words_tests {
    use super::plain_words;

    #[test]
    fn type_mismatches_name_the_field_and_what_it_must_be_in_plain_words() {
        assert_eq!(
            plain_words(
                "apps[0].version",
                "invalid type: string \"x\", expected u32 at line 1 column 67"
            ),
            (
                "apps[0].version".into(),
                "must be a whole number from 0 to 4294967295, not the text \"x\"".into()
            )
        );
        assert_eq!(
            plain_words(
                "apps[1]",
                "invalid type: integer `3`, expected struct RequiredApp"
            ),
            (
                "apps[1]".into(),
                "must be an object, not the number 3".into()
            )
        );
        assert_eq!(
            plain_words(".", "missing field `serial`"),
            ("serial".into(), "is required".into())
        );
        assert_eq!(
            plain_words(
                "apps[0]",
                "unknown field `name`, expected `key` or `settings`"
            ),
            (
                "apps[0].name".into(),
                "is not a field here; the fields are key or settings".into()
            )
        );
        assert_eq!(
            plain_words(
                "colour",
                "unknown field `colour`, expected one of `kind`, `app`"
            ),
            (
                "colour".into(),
                "is not a field here; the fields are kind, app".into()
            )
        );
        assert_eq!(
            plain_words(
                "kind",
                "unknown variant `reboot`, expected one of `lock`, `restart`"
            ),
            ("kind".into(), "must be one of lock, restart".into())
        );
    }
}
