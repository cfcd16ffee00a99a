//! Request bodies over their limit, answered so that the client reads the answer.
//!
//! A client that writes its whole body before reading (Python's urllib, most simple
//! clients) never sees a 413 sent while it is still writing: the server closes, the client's
//! next write fails with a broken pipe or a reset. So an oversized body is read and thrown
//! away up to `discard_max` bytes, and only then answered (413, `Connection: close`). A
//! larger body is not read at all, as before. A client that asked `Expect: 100-continue`
//! has sent nothing yet: it is answered at once, and hyper never invites the body.

use std::pin::Pin;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;
use http_body::{Body as _, Frame};

/// How far the listener goes with a body it will refuse or must wait for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyLimits {
    /// Bytes of an oversized body read and discarded before answering.
    pub(crate) discard_max: u64,
    /// Longest the listener waits for a body it reads whole (and for a discard).
    pub(crate) deadline: Duration,
}

/// Why a whole body could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BodyError {
    #[error("body larger than {max} bytes")]
    TooLarge { max: u64 },
    #[error("the body did not arrive within {} s", secs.as_secs())]
    TimedOut { secs: Duration },
    #[error("reading the body failed")]
    Broken,
}

/// The Content-Length a request declares, if any.
pub(crate) fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// True when the client waits for `100 Continue` before sending its body.
pub(crate) fn expects_continue(headers: &HeaderMap) -> bool {
    headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// Reads a body of at most `max` bytes, whole, within the deadline.
pub(crate) async fn read_whole(
    mut body: Body,
    headers: &HeaderMap,
    max: u64,
    limits: BodyLimits,
) -> Result<Bytes, BodyError> {
    if declared_length(headers).is_some_and(|n| n > max) {
        refuse_body(body, headers, limits).await;
        return Err(BodyError::TooLarge { max });
    }
    let read = async {
        let mut kept = Vec::new();
        while let Some(frame) = next_frame(&mut body).await {
            let Ok(frame) = frame else {
                return Err(BodyError::Broken);
            };
            if let Ok(data) = frame.into_data() {
                if (kept.len() + data.len()) as u64 > max {
                    let read = (kept.len() + data.len()) as u64;
                    discard(&mut body, limits.discard_max.saturating_sub(read)).await;
                    return Err(BodyError::TooLarge { max });
                }
                kept.extend_from_slice(&data);
            }
        }
        Ok(Bytes::from(kept))
    };
    tokio::time::timeout(limits.deadline, read)
        .await
        .unwrap_or(Err(BodyError::TimedOut {
            secs: limits.deadline,
        }))
}

/// Before a 413 for a declared length over the limit: reads and throws the body away when
/// that lets the client read the answer (see the module comment).
pub(crate) async fn refuse_body(mut body: Body, headers: &HeaderMap, limits: BodyLimits) {
    let declared = declared_length(headers);
    if expects_continue(headers) || declared.is_some_and(|n| n > limits.discard_max) {
        return;
    }
    let _ = tokio::time::timeout(limits.deadline, discard(&mut body, limits.discard_max)).await;
}

/// The next frame of `body`, `None` at its end.
async fn next_frame(body: &mut Body) -> Option<Result<Frame<Bytes>, axum::Error>> {
    std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await
}

/// Reads and drops up to `budget` bytes of what is left of `body`.
async fn discard(body: &mut Body, budget: u64) {
    let mut left = budget;
    while left > 0 {
        match next_frame(body).await {
            Some(Ok(frame)) => {
                let n = frame.data_ref().map_or(0, |d| d.len() as u64);
                left = left.saturating_sub(n);
            }
            Some(Err(_)) | None => return,
        }
    }
}

/// `response` with `Connection: close`: hyper closes the connection once it is sent, so what
/// is left of a refused body is never taken for a next request.
pub(crate) fn closing(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}
