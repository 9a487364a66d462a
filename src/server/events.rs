//! Event routes: `GET /v1/namespaces/{ns}/events` as Server-Sent Events
//! (`Accept: text/event-stream`) or JSON long-poll, and consumer cursors
//! (`PUT`/`GET /v1/namespaces/{ns}/consumers/{name}`).
//!
//! Streams read the change log only ([`crate::engine::Event`]): resume with
//! `Last-Event-ID` (`<namespace>:<seq>`), `?after=<seq>` or `?consumer=<name>`
//! and no event is missed or repeated. Open streams hold one of `max_streams`
//! permits (429 beyond), not the request permits, and end at once on shutdown.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorResponse};
use super::{ApiJson, ApiPath, ApiQuery, AppState, Caller};
use crate::core::access::Access;
use crate::core::error::Error;
use crate::engine::{Engine, EventFilter, EventPage};
use crate::storage::ChangeKind;

/// Longest long-poll wait, in seconds.
pub const MAX_WAIT_S: u64 = 60;

/// Query of `GET …/events`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventParams {
    /// Events with a seq above this (default 0: from the start of the log). Also
    /// `Last-Event-ID`.
    pub after: Option<u64>,
    /// Start after what this consumer acknowledged (`PUT …/consumers/{name}`).
    pub consumer: Option<String>,
    /// Comma-separated event types, e.g. `context.set,context.deleted` (default all).
    pub types: Option<String>,
    /// Only context events whose key starts with this.
    pub key_prefix: Option<String>,
    /// Long-poll: when nothing is pending, wait up to this many seconds (0..=60,
    /// default 0) for an event.
    pub wait_s: Option<u64>,
    /// Changes read per page, 1..=1000 (default 100).
    pub limit: Option<usize>,
    /// Also the events of every namespace below this one in the hierarchy
    /// (default false). Such a stream's position is a cursor of
    /// `<namespace>:<seq>` pairs: SSE ids carry it, long-poll answers it as
    /// `cursor`, and `cursor=` (or `Last-Event-ID`) resumes from it.
    pub descendants: Option<bool>,
    /// With `descendants=true`: resume from this cursor.
    pub cursor: Option<String>,
}

/// A long-poll page of a stream with `descendants=true`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TreeEventPage {
    /// Events, by commit time across namespaces (per namespace in seq order).
    pub events: Vec<crate::engine::Event>,
    /// Pass as `cursor` to continue.
    pub cursor: String,
    /// Namespaces whose asked-for changes are gone (retention): the oldest seq
    /// still available in each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resets: Vec<(String, u64)>,
}

/// Body of `PUT …/consumers/{name}` and what both consumer routes answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsumerCursor {
    /// Every event up to this seq is processed; `…/events?consumer=` resumes after it.
    pub acked: u64,
}

/// The event routes that hold a stream (outside the in-flight request limit).
pub(super) fn stream_routes() -> Router<AppState> {
    Router::new().route("/v1/namespaces/{ns}/events", get(events))
}

/// The consumer routes (merged into `/v1`).
pub(super) fn routes() -> Router<AppState> {
    Router::new().route(
        "/v1/namespaces/{ns}/consumers/{name}",
        get(get_consumer).put(put_consumer),
    )
}

fn filter(p: &EventParams) -> Result<EventFilter, ApiError> {
    let mut types = Vec::new();
    for t in p
        .types
        .as_deref()
        .unwrap_or("")
        .split(',')
        .filter(|t| !t.is_empty())
    {
        let kind: ChangeKind = serde_json::from_value(serde_json::Value::String(t.trim().into()))
            .map_err(|_| {
            Error::invalid(
                "types",
                format!("{t:?} is not an event type (e.g. message.added, context.set)"),
            )
        })?;
        types.push(kind);
    }
    Ok(EventFilter {
        types,
        key_prefix: p.key_prefix.clone(),
    })
}

/// Where the stream starts: `Last-Event-ID`, else `consumer`, else `after`.
async fn start(
    engine: &Engine,
    access: &Access,
    ns: &str,
    headers: &HeaderMap,
    p: &EventParams,
) -> Result<u64, ApiError> {
    if let Some(v) = headers.get("last-event-id") {
        let text = v.to_str().unwrap_or_default();
        let seq = text
            .rsplit_once(':')
            .filter(|(n, _)| *n == ns)
            .and_then(|(_, s)| s.parse().ok())
            .ok_or_else(|| {
                Error::invalid(
                    "Last-Event-ID",
                    format!("must be an event id of this namespace, \"{ns}:<seq>\""),
                )
            })?;
        return Ok(seq);
    }
    if let Some(name) = &p.consumer {
        if p.after.is_some() {
            return Err(Error::invalid("after", "give either `after` or `consumer`").into());
        }
        return Ok(engine.consumer_acked(access, ns, name).await?);
    }
    Ok(p.after.unwrap_or(0))
}

#[utoipa::path(get, path = "/v1/namespaces/{ns}/events",
    params(("ns" = String, Path, description = "namespace"), EventParams,
        ("Last-Event-ID" = Option<String>, Header, description = "resume after this event (`<namespace>:<seq>`)")),
    responses((status = 200, description = "JSON long-poll page; with `Accept: text/event-stream`, an SSE stream of events (`event:` the type, `id:` `<namespace>:<seq>`, `data:` the event), and a `reset` event when the log no longer holds the changes asked for", body = EventPage),
        (status = 422, body = ErrorResponse),
        (status = 429, description = "too many open streams", body = ErrorResponse)))]
pub(super) async fn events(
    State(s): State<AppState>,
    Caller(me): Caller,
    ApiPath(ns): ApiPath<String>,
    headers: HeaderMap,
    ApiQuery(p): ApiQuery<EventParams>,
) -> Result<Response, ApiError> {
    let engine = s.engine()?.clone();
    let filter = filter(&p)?;
    let limit = p.limit.unwrap_or(100);
    let wait = p.wait_s.unwrap_or(0);
    if wait > MAX_WAIT_S {
        return Err(Error::invalid("wait_s", format!("must be 0 to {MAX_WAIT_S}")).into());
    }
    if p.descendants == Some(true) {
        return tree_events(s, engine, me, ns, headers, p, filter, limit, wait).await;
    }
    if p.cursor.is_some() {
        return Err(Error::invalid("cursor", "only with descendants=true; use `after`").into());
    }
    let after = start(&engine, &me, &ns, &headers, &p).await?;
    // Validates namespace, access and limit before a stream is opened.
    let first = engine.events(&me, &ns, after, limit, &filter).await?;
    let sse = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    if !sse {
        if first.next > after || wait == 0 {
            delivered(first.events.len());
            return Ok(Json(first).into_response());
        }
        // Nothing yet: wait for a commit (anywhere), then read again, until the
        // deadline or shutdown.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
        let mut seen = engine.commit_counter();
        let mut closing = s.closing.subscribe();
        loop {
            let page = engine.events(&me, &ns, after, limit, &filter).await?;
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if page.next > after || left.is_zero() || *closing.borrow() {
                delivered(page.events.len());
                return Ok(Json(page).into_response());
            }
            tokio::select! {
                n = engine.wait_for_commit(seen, left) => seen = n,
                _ = closing.wait_for(|c| *c) => {}
            }
        }
    }
    let permit = stream_permit(&s)?;
    let closing = s.closing.subscribe();
    let state = StreamState {
        engine,
        access: me,
        ns,
        filter,
        limit,
        cursor: after,
        pending: first,
        closing,
        _permit: permit,
    };
    let stream = futures_util::stream::unfold(Some(state), |st| async move {
        let mut st = st?;
        loop {
            if *st.closing.borrow() || !st.engine.still_authorized(&st.access) {
                return None;
            }
            if let Some(oldest) = st.pending.reset.take() {
                let data = serde_json::json!({"oldest": oldest, "requested_after": st.cursor});
                let ev = SseEvent::default().event("reset").data(data.to_string());
                return Some((Ok::<_, Infallible>(ev), Some(st)));
            }
            if !st.pending.events.is_empty() {
                let e = st.pending.events.remove(0);
                let id = e.id.clone();
                return Some((Ok(sse_event(&e, id)), Some(st)));
            }
            let advanced = st.pending.next > st.cursor;
            st.cursor = st.pending.next;
            if !advanced {
                // Caught up: sleep until something commits (or shutdown).
                let seen = st.engine.commit_counter();
                let page = st
                    .engine
                    .events(&st.access, &st.ns, st.cursor, st.limit, &st.filter)
                    .await;
                match page {
                    Ok(p) if p.next > st.cursor => {
                        st.pending = p;
                        continue;
                    }
                    Ok(_) => {}
                    Err(_) => return None,
                }
                let mut closing = st.closing.clone();
                tokio::select! {
                    _ = st.engine.wait_for_commit(seen, Duration::from_secs(15)) => {}
                    _ = closing.wait_for(|c| *c) => return None,
                }
            }
            match st
                .engine
                .events(&st.access, &st.ns, st.cursor, st.limit, &st.filter)
                .await
            {
                Ok(p) => st.pending = p,
                Err(_) => return None,
            }
        }
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

/// `…/events?descendants=true`: the namespace and everything below it.
#[allow(clippy::too_many_arguments)]
async fn tree_events(
    s: AppState,
    engine: Engine,
    me: Access,
    ns: String,
    headers: HeaderMap,
    p: EventParams,
    filter: EventFilter,
    limit: usize,
    wait: u64,
) -> Result<Response, ApiError> {
    use crate::engine::EventCursor;
    if p.after.is_some() || p.consumer.is_some() {
        return Err(Error::invalid(
            "after",
            "with descendants=true, resume from `cursor` (or Last-Event-ID)",
        )
        .into());
    }
    let from_header = headers
        .get("last-event-id")
        .map(|v| v.to_str().unwrap_or("\u{0}").to_owned());
    let cursor = EventCursor::parse(from_header.as_deref().or(p.cursor.as_deref()).unwrap_or(""))?;
    // Taken before the first read, so a commit landing during it still wakes us.
    let mut seen = engine.commit_counter();
    let first = engine
        .events_below(&me, &ns, &cursor, limit, &filter)
        .await?;
    let sse = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    if !sse {
        let mut page = first;
        if !page.advanced && wait > 0 {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
            let mut closing = s.closing.subscribe();
            loop {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                if page.advanced || left.is_zero() || *closing.borrow() {
                    break;
                }
                tokio::select! {
                    n = engine.wait_for_commit(seen, left) => seen = n,
                    _ = closing.wait_for(|c| *c) => break,
                }
                page = engine
                    .events_below(&me, &ns, &cursor, limit, &filter)
                    .await?;
            }
        }
        return Ok(Json(TreeEventPage {
            events: page.events,
            cursor: page.cursor.to_string(),
            resets: page.resets,
        })
        .into_response());
    }
    let permit = stream_permit(&s)?;
    struct Tree {
        engine: Engine,
        access: Access,
        ns: String,
        filter: EventFilter,
        limit: usize,
        /// Position after the events already sent (their SSE ids).
        sent: EventCursor,
        /// Position after the page read.
        read: EventCursor,
        pending: std::collections::VecDeque<crate::engine::Event>,
        resets: Vec<(String, u64)>,
        closing: tokio::sync::watch::Receiver<bool>,
        _permit: tokio::sync::OwnedSemaphorePermit,
    }
    impl Drop for Tree {
        fn drop(&mut self) {
            metrics::gauge!("memoryd_event_streams_open").decrement(1.0);
        }
    }
    let state = Tree {
        engine,
        access: me,
        ns,
        filter,
        limit,
        sent: cursor,
        read: first.cursor,
        pending: first.events.into(),
        resets: first.resets,
        closing: s.closing.subscribe(),
        _permit: permit,
    };
    let stream = futures_util::stream::unfold(Some(state), |st| async move {
        let mut st = st?;
        loop {
            if *st.closing.borrow() || !st.engine.still_authorized(&st.access) {
                return None;
            }
            if let Some((n, oldest)) = st.resets.pop() {
                let data = serde_json::json!({"namespace": n, "oldest": oldest});
                let ev = SseEvent::default().event("reset").data(data.to_string());
                return Some((Ok::<_, Infallible>(ev), Some(st)));
            }
            if let Some(e) = st.pending.pop_front() {
                st.sent.0.insert(e.namespace.clone(), e.seq);
                if st.pending.is_empty() {
                    // The page's filtered-out changes are behind us too.
                    st.sent = st.read.clone();
                }
                let id = st.sent.to_string();
                return Some((Ok(sse_event(&e, id)), Some(st)));
            }
            st.sent = st.read.clone();
            let seen = st.engine.commit_counter();
            let page = st
                .engine
                .events_below(&st.access, &st.ns, &st.read, st.limit, &st.filter)
                .await;
            match page {
                Ok(p) if p.advanced => {
                    st.read = p.cursor;
                    st.pending = p.events.into();
                    st.resets = p.resets;
                    continue;
                }
                Ok(_) => {}
                Err(_) => return None,
            }
            let mut closing = st.closing.clone();
            tokio::select! {
                _ = st.engine.wait_for_commit(seen, Duration::from_secs(15)) => {}
                _ = closing.wait_for(|c| *c) => return None,
            }
        }
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

/// One of the `max_streams` permits (counted in `memoryd_event_streams_open`
/// until the stream's state drops), or 429.
fn stream_permit(s: &AppState) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
    let permit = s.streams.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "overloaded",
            "too many open event streams; retry later",
        )
    })?;
    metrics::gauge!("memoryd_event_streams_open").increment(1.0);
    Ok(permit)
}

/// An event as SSE: `id` (where a resume starts), `event` its type, `data` its JSON.
/// Counts events handed to a long-poll client.
fn delivered(n: usize) {
    metrics::counter!("memoryd_events_delivered_total").increment(n as u64);
}

fn sse_event(e: &crate::engine::Event, id: String) -> SseEvent {
    metrics::counter!("memoryd_events_delivered_total").increment(1);
    SseEvent::default()
        .id(id)
        .event(e.kind.as_str())
        .data(serde_json::to_string(e).unwrap_or_default())
}

/// One open stream.
struct StreamState {
    engine: Engine,
    /// The subscriber (a revoked or expired key ends the stream).
    access: Access,
    ns: String,
    filter: EventFilter,
    limit: usize,
    /// Events up to this seq are delivered (or filtered out).
    cursor: u64,
    /// Read but not yet delivered.
    pending: EventPage,
    closing: tokio::sync::watch::Receiver<bool>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for StreamState {
    fn drop(&mut self) {
        metrics::gauge!("memoryd_event_streams_open").decrement(1.0);
    }
}

#[utoipa::path(put, path = "/v1/namespaces/{ns}/consumers/{name}", request_body = ConsumerCursor,
    params(("ns" = String, Path, description = "namespace"), ("name" = String, Path, description = "consumer name")),
    responses((status = 200, body = ConsumerCursor), (status = 422, body = ErrorResponse)))]
pub(super) async fn put_consumer(
    State(s): State<AppState>,
    Caller(me): Caller,
    ApiPath((ns, name)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<ConsumerCursor>,
) -> Result<Json<ConsumerCursor>, ApiError> {
    let acked = s
        .engine()?
        .consumer_ack(&me, &ns, &name, body.acked)
        .await?;
    Ok(Json(ConsumerCursor { acked }))
}

#[utoipa::path(get, path = "/v1/namespaces/{ns}/consumers/{name}",
    params(("ns" = String, Path, description = "namespace"), ("name" = String, Path, description = "consumer name")),
    responses((status = 200, description = "the acknowledged seq (0: none yet)", body = ConsumerCursor),
        (status = 422, body = ErrorResponse)))]
pub(super) async fn get_consumer(
    State(s): State<AppState>,
    Caller(me): Caller,
    ApiPath((ns, name)): ApiPath<(String, String)>,
) -> Result<Json<ConsumerCursor>, ApiError> {
    let acked = s.engine()?.consumer_acked(&me, &ns, &name).await?;
    Ok(Json(ConsumerCursor { acked }))
}
