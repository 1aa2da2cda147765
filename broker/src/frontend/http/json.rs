//! JSON replies and the error body every endpoint uses.
//!
//! An error is `{"code": "...", "error_code": n, "message": "..."}`: `code`
//! is a stable snake-case name, `error_code` the protocol's stable number
//! ([`ErrorCode`]), and the HTTP status follows the class of the error
//! (400 bad input, 404 unknown topic/group/partition, 409 fencing or a
//! conflict, 413 too large, 429 throttled, 503 fenced partition or shutting
//! down). Errors that exist only over HTTP (bad JSON, an unknown route, a
//! body over the cap) borrow the nearest protocol number and have their own
//! `code`.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use serde::Serialize;
use shoal_protocol::error::ErrorCode;

use crate::error::BrokerError;

/// The response type of every endpoint.
pub type HttpResponse = Response<Full<Bytes>>;

/// The stable `code` of an error reply, kept on the response so the
/// metrics can count replies by code without parsing the body.
#[derive(Debug, Clone, Copy)]
pub struct ErrorTag(pub &'static str);

/// An endpoint failure, rendered as the JSON error body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code} ({error_code}): {message}")]
pub struct HttpError {
    pub status: StatusCode,
    pub code: &'static str,
    pub error_code: u16,
    pub message: String,
    /// For 429: when the client may retry (sent as `Retry-After`).
    pub retry_after_ms: Option<u64>,
}

impl HttpError {
    /// An error the protocol already names.
    pub fn from_code(code: ErrorCode, message: impl Into<String>) -> Self {
        HttpError {
            status: status_for(code),
            code: code.name(),
            error_code: code.to_wire(),
            message: message.into(),
            retry_after_ms: None,
        }
    }

    /// A protocol error carried as a wire number and message in a response.
    pub fn from_wire(code: u16, message: impl Into<String>) -> Self {
        let mut message = message.into();
        let known = ErrorCode::from_wire(code);
        if message.is_empty() {
            message = known.message().to_string();
        }
        HttpError {
            error_code: code,
            ..Self::from_code(known, message)
        }
    }

    /// 400: a field or parameter is invalid.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::from_code(ErrorCode::InvalidRequest, message)
    }

    /// 400: the body is not the JSON the endpoint takes.
    pub fn bad_json(message: impl Into<String>) -> Self {
        HttpError {
            code: "bad_json",
            ..Self::invalid(message)
        }
    }

    /// 413: the body is over the cap.
    pub fn body_too_large(limit_bytes: usize) -> Self {
        HttpError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code: "body_too_large",
            error_code: ErrorCode::FrameTooLarge.to_wire(),
            message: format!("request body is over {limit_bytes} bytes"),
            retry_after_ms: None,
        }
    }

    /// 404: no endpoint has this path.
    pub fn unknown_route(method: &hyper::Method, path: &str) -> Self {
        HttpError {
            status: StatusCode::NOT_FOUND,
            code: "unknown_route",
            error_code: ErrorCode::UnknownApi.to_wire(),
            message: format!("no endpoint for {method} {path}"),
            retry_after_ms: None,
        }
    }

    /// 405: the path exists but not with this method.
    pub fn method_not_allowed(method: &hyper::Method, path: &str) -> Self {
        HttpError {
            status: StatusCode::METHOD_NOT_ALLOWED,
            code: "method_not_allowed",
            error_code: ErrorCode::UnknownApi.to_wire(),
            message: format!("{path} does not take {method}"),
            retry_after_ms: None,
        }
    }

    /// 429: the connection is over its byte rate; retry after `retry_ms`.
    pub fn throttled(retry_ms: u64) -> Self {
        HttpError {
            retry_after_ms: Some(retry_ms),
            ..HttpError::from_code(
                ErrorCode::Throttled,
                format!("over the publish byte rate: retry in {retry_ms} ms"),
            )
        }
    }

    /// 408: the client took too long to send its request.
    pub fn request_timeout(message: impl Into<String>) -> Self {
        HttpError {
            status: StatusCode::REQUEST_TIMEOUT,
            code: "request_timeout",
            error_code: ErrorCode::Timeout.to_wire(),
            message: message.into(),
            retry_after_ms: None,
        }
    }

    pub fn into_response(self) -> HttpResponse {
        #[derive(Serialize)]
        struct Body<'a> {
            code: &'a str,
            error_code: u16,
            message: &'a str,
        }
        let body = Body {
            code: self.code,
            error_code: self.error_code,
            message: &self.message,
        };
        let mut resp = json_response(self.status, &body);
        resp.extensions_mut().insert(ErrorTag(self.code));
        if let Some(ms) = self.retry_after_ms {
            // Retry-After takes whole seconds: round up so a client never retries early.
            let secs = ms.div_ceil(1000).max(1);
            resp.headers_mut()
                .insert(hyper::header::RETRY_AFTER, hyper::header::HeaderValue::from(secs));
        }
        resp
    }
}

impl From<BrokerError> for HttpError {
    /// A service error keeps its class: the status follows its wire code
    /// ([`status_for`]), and a throttle carries when to retry.
    fn from(e: BrokerError) -> Self {
        let mut out = HttpError::from_code(e.code(), e.to_string());
        if let BrokerError::Throttled { retry_ms } = e {
            out.retry_after_ms = Some(retry_ms);
        }
        out
    }
}

/// The HTTP status for a protocol error code: the one mapping from error
/// class to status.
pub fn status_for(code: ErrorCode) -> StatusCode {
    use ErrorCode::*;
    match code {
        None | Duplicate => StatusCode::OK,
        UnknownTopic | UnknownPartition | UnknownGroup | QuarantineEntryNotFound | UnknownApi => {
            StatusCode::NOT_FOUND
        }
        TopicExists | UnknownMember | StaleGeneration | RebalanceInProgress => StatusCode::CONFLICT,
        FrameTooLarge | RecordTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        Throttled => StatusCode::TOO_MANY_REQUESTS,
        PartitionFenced | ShuttingDown | NotOwner | CircuitOpen | PartitionRecovering
        | TooManyConnections | NotLeader | NotCoordinator => StatusCode::SERVICE_UNAVAILABLE,
        Timeout => StatusCode::GATEWAY_TIMEOUT,
        AuthenticationFailed => StatusCode::UNAUTHORIZED,
        AuthorizationFailed => StatusCode::FORBIDDEN,
        Internal | Unknown => StatusCode::INTERNAL_SERVER_ERROR,
        InvalidRequest | UnsupportedVersion | CorruptBatch | OffsetOutOfRange | InvalidOffset
        | NotSubscribed | OutOfOrderSequence | CorruptFrame => StatusCode::BAD_REQUEST,
    }
}

/// Serialises `body` as the reply with `status`.
pub fn json_response<T: Serialize>(status: StatusCode, body: &T) -> HttpResponse {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|e| {
        // Our own reply types always serialise; this is a broker bug.
        format!(r#"{{"code":"internal","error_code":21,"message":"reply encoding failed: {e}"}}"#)
            .into_bytes()
    });
    let mut resp = Response::new(Full::new(Bytes::from(bytes)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

/// 200 with `body`.
pub fn ok<T: Serialize>(body: &T) -> HttpResponse {
    json_response(StatusCode::OK, body)
}

/// Parses a JSON body into `T`, naming the problem on failure.
pub fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, HttpError> {
    if body.is_empty() {
        return Err(HttpError::bad_json("the request needs a JSON body"));
    }
    serde_json::from_slice(body).map_err(|e| HttpError::bad_json(format!("invalid JSON body: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every protocol code maps to the status class the API documents.
    #[test]
    fn statuses_follow_the_error_class() {
        assert_eq!(status_for(ErrorCode::UnknownTopic), StatusCode::NOT_FOUND);
        assert_eq!(status_for(ErrorCode::UnknownGroup), StatusCode::NOT_FOUND);
        assert_eq!(status_for(ErrorCode::StaleGeneration), StatusCode::CONFLICT);
        assert_eq!(
            status_for(ErrorCode::RecordTooLarge),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(status_for(ErrorCode::Throttled), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            status_for(ErrorCode::PartitionFenced),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            status_for(ErrorCode::ShuttingDown),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(status_for(ErrorCode::InvalidRequest), StatusCode::BAD_REQUEST);
    }

    /// A wire number without a message still yields a readable message.
    #[test]
    fn wire_errors_get_a_message() {
        let e = HttpError::from_wire(ErrorCode::UnknownTopic.to_wire(), "");
        assert_eq!(e.code, "unknown_topic");
        assert_eq!(e.error_code, 1);
        assert!(!e.message.is_empty());
    }

    /// Bad JSON is a 400 with its own code and the parser's explanation.
    #[test]
    fn bad_json_is_named() {
        #[derive(serde::Deserialize, Debug)]
        struct T {
            #[allow(dead_code)]
            a: u32,
        }
        let e = parse::<T>(b"{\"a\": ").unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.code, "bad_json");
        assert!(e.message.contains("invalid JSON"), "{}", e.message);
    }
}
