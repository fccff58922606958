//! Desktop real-time sync over `/ws/desktop/{id}`: gateway, desktop-state and event-dispatcher
//! in-process against the real Postgres and NATS JetStream.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::{SinkExt as _, StreamExt as _};
use getlood_events::{Domain, EventBus, Payload, new_envelope};
use getlood_proto::desktop_state::v1::Window;
use getlood_proto::events::v1::WindowOpened;
use getlood_testkit::{Platform, Service};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A tenant id no other test (or earlier run) uses: the JetStream streams are shared.
pub(crate) fn unique_tenant(tag: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{tag}_{}_{}_{}", nanos % 1_000_000_000_000, std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// Gateway, desktop-state and event-dispatcher (memory ingestion off), with the gateway's own
/// `app` settings.
pub(crate) struct Realtime {
    pub platform: Platform,
    pub http: reqwest::Client,
    pub base: String,
    pub ws_base: String,
}

impl Realtime {
    pub(crate) async fn start(gateway: Value) -> anyhow::Result<Self> {
        let platform = Platform::builder()
            .service(Service::DesktopState)
            .service(Service::EventDispatcher)
            .service(Service::Gateway)
            .app_settings(Service::EventDispatcher, json!({"memory": {"enabled": false}}))
            .app_settings(Service::Gateway, gateway)
            .start()
            .await?;
        platform.wait_ready(Duration::from_secs(30)).await?;
        let addr = platform.get(Service::Gateway).http_addr;
        Ok(Self {
            platform,
            http: reqwest::Client::new(),
            base: format!("http://{addr}"),
            ws_base: format!("ws://{addr}"),
        })
    }

    pub(crate) fn token(&self, tenant: &str, user: &str) -> String {
        self.platform.token(tenant, user, &["member"])
    }

    pub(crate) async fn create_desktop(&self, token: &str, name: &str) -> anyhow::Result<String> {
        let resp = self
            .http
            .post(format!("{}/api/v1/desktops", self.base))
            .bearer_auth(token)
            .json(&json!({"name": name}))
            .send()
            .await?;
        anyhow::ensure!(resp.status() == 201, "create desktop: {} {}", resp.status(), resp.text().await?);
        let body: Value = resp.json().await?;
        Ok(body["id"].as_str().unwrap_or_default().to_owned())
    }

    /// Opens a window through REST; returns the response body.
    pub(crate) async fn open_window(&self, token: &str, desktop: &str, app: &str) -> anyhow::Result<Value> {
        let resp = self
            .http
            .post(format!("{}/api/v1/desktops/{desktop}/windows", self.base))
            .bearer_auth(token)
            .json(&json!({"app_id": app, "title": app}))
            .send()
            .await?;
        anyhow::ensure!(resp.status() == 201, "open window: {} {}", resp.status(), resp.text().await?);
        Ok(resp.json().await?)
    }

    pub(crate) async fn connect(
        &self,
        token: &str,
        desktop: &str,
        after: Option<&str>,
    ) -> Result<Ws, tungstenite::Error> {
        let query = after.map(|c| format!("?after={c}")).unwrap_or_default();
        let mut req = format!("{}/ws/desktop/{desktop}{query}", self.ws_base).into_client_request()?;
        req.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
        let (ws, _) = tokio_tungstenite::connect_async(req).await?;
        Ok(ws)
    }

    pub(crate) async fn stop(self) -> anyhow::Result<()> {
        self.platform.stop().await
    }
}

/// The next JSON text frame within `timeout` (pings skipped); None on timeout or close.
pub(crate) async fn recv(ws: &mut Ws, timeout: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next()).await.ok()??;
        match msg.ok()? {
            Message::Text(t) => return serde_json::from_str(t.as_str()).ok(),
            Message::Close(_) => return None,
            _ => {}
        }
    }
}

/// The next `event` frame within `timeout`.
pub(crate) async fn recv_event(ws: &mut Ws, timeout: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let frame = recv(ws, left).await?;
        if frame["type"] == "event" {
            return Some(frame);
        }
    }
}

async fn state_frame(ws: &mut Ws) -> Value {
    let frame = recv(ws, Duration::from_secs(10)).await.expect("state frame");
    assert_eq!(frame["type"], "state", "the first frame is the state: {frame}");
    frame
}

#[tokio::test]
async fn desktop_ws_two_clients_see_a_posted_window_and_other_tenants_nothing() -> anyhow::Result<()> {
    let rt = Realtime::start(json!({})).await?;
    let (acme, globex) = (unique_tenant("acme"), unique_tenant("globex"));
    let alice = rt.token(&acme, "alice");
    let mallory = rt.token(&globex, "mallory");
    let desktop = rt.create_desktop(&alice, "main").await?;
    let other = rt.create_desktop(&mallory, "theirs").await?;

    let mut first = rt.connect(&alice, &desktop, None).await?;
    let mut second = rt.connect(&alice, &desktop, None).await?;
    let state = state_frame(&mut first).await;
    assert_eq!(state["desktop"]["id"], desktop.as_str());
    assert_eq!(state["desktop"]["windows"], json!([]));
    state_frame(&mut second).await;

    // Another tenant's desktop: 404 before any upgrade, as REST answers.
    match rt.connect(&mallory, &desktop, None).await {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 404),
        other => panic!("expected a 404, got {:?}", other.map(|_| "a socket")),
    }
    let resp = rt.http.get(format!("{}/api/v1/desktop/state/{desktop}", rt.base)).bearer_auth(&mallory).send().await?;
    assert_eq!(resp.status(), 404);
    // No token at all: 401.
    let plain = format!("{}/ws/desktop/{desktop}", rt.ws_base).into_client_request()?;
    match tokio_tungstenite::connect_async(plain).await {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 401),
        other => panic!("expected a 401, got {:?}", other.map(|_| "a socket")),
    }
    let mut outsider = rt.connect(&mallory, &other, None).await?;
    state_frame(&mut outsider).await;

    let opened = rt.open_window(&alice, &desktop, "dashboard").await?;
    let window_id = opened["window"]["id"].as_str().unwrap().to_owned();
    for ws in [&mut first, &mut second] {
        let frame = recv_event(ws, Duration::from_secs(10)).await.expect("window.opened on every client");
        assert_eq!(frame["event"]["type"], "window.opened");
        assert_eq!(frame["event"]["entity_id"], desktop.as_str());
        assert_eq!(frame["event"]["data"]["window"]["id"], window_id.as_str());
        assert_eq!(frame["event"]["data"]["window"]["app_id"], "dashboard");
        assert!(frame["cursor"].as_str().unwrap().starts_with("window:"));
    }
    assert!(recv_event(&mut outsider, Duration::from_secs(1)).await.is_none(), "another tenant's client sees nothing");

    // The seed's state routes: GET returns what POST saved.
    let saved = rt
        .http
        .post(format!("{}/api/v1/desktop/state", rt.base))
        .bearer_auth(&alice)
        .json(&json!({
            "desktop_id": desktop,
            "windows": [{"id": window_id, "app_id": "dashboard", "x": 40, "y": 50, "width": 640, "height": 480}],
            "focus_stack": [window_id],
        }))
        .send()
        .await?;
    assert_eq!(saved.status(), 200, "{}", saved.text().await?);
    let got: Value = rt
        .http
        .get(format!("{}/api/v1/desktop/state/{desktop}", rt.base))
        .bearer_auth(&alice)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(got["windows"][0]["x"], 40);
    assert_eq!(got["focus_stack"], json!([window_id]));
    let saved_event = recv_event(&mut first, Duration::from_secs(10)).await.expect("desktop.saved");
    assert_eq!(saved_event["event"]["type"], "desktop.saved");
    rt.stop().await
}

#[tokio::test]
async fn desktop_ws_malformed_commands_get_error_frames_and_the_socket_stays_open() -> anyhow::Result<()> {
    let rt = Realtime::start(json!({})).await?;
    let tenant = unique_tenant("cmds");
    let token = rt.token(&tenant, "alice");
    let desktop = rt.create_desktop(&token, "main").await?;
    let mut ws = rt.connect(&token, &desktop, None).await?;
    state_frame(&mut ws).await;

    for (bad, id) in [
        ("not json", Value::Null),
        (r#"{"type":"explode","id":"c1"}"#, json!("c1")),
        (r#"{"type":"move","id":"c2"}"#, json!("c2")),
        (r#"{"type":"open","id":"c3","app_id":""}"#, json!("c3")),
        (r#"{"type":"close","id":"c4","window_id":"00000000-0000-0000-0000-000000000000"}"#, json!("c4")),
    ] {
        ws.send(Message::text(bad)).await?;
        let frame = recv(&mut ws, Duration::from_secs(10)).await.expect("an answer to every command");
        assert_eq!(frame["type"], "error", "{bad}: {frame}");
        assert_eq!(frame["id"], id);
        assert!(["invalid_argument", "not_found"].contains(&frame["code"].as_str().unwrap()), "{frame}");
    }

    // Still open: a valid command works and its event arrives.
    ws.send(Message::text(r#"{"type":"open","id":"ok","app_id":"notes","width":300,"height":200}"#)).await?;
    let mut result = None;
    let mut event = None;
    while result.is_none() || event.is_none() {
        let frame = recv(&mut ws, Duration::from_secs(10)).await.expect("result and event");
        match frame["type"].as_str() {
            Some("result") => result = Some(frame),
            Some("event") => event = Some(frame),
            other => panic!("unexpected frame {other:?}"),
        }
    }
    let result = result.unwrap();
    assert_eq!(result["id"], "ok");
    assert_eq!(result["command"], "open");
    let window_id = result["result"]["window"]["id"].as_str().unwrap().to_owned();
    assert_eq!(event.unwrap()["event"]["data"]["window"]["id"], window_id.as_str());

    ws.send(Message::text(json!({"type": "maximize", "window_id": window_id}).to_string())).await?;
    let frame = recv(&mut ws, Duration::from_secs(10)).await.unwrap();
    assert_eq!(frame["type"], "result", "{frame}");
    assert_eq!(frame["result"]["window"]["state"], "maximized");
    rt.stop().await
}

/// A client that drops, misses events, and comes back with its last cursor gets each missed
/// event once, in order.
async fn resume_scenario(gateway: Value, wait_for_feed_to_stop: Option<Duration>) -> anyhow::Result<()> {
    let rt = Realtime::start(gateway).await?;
    let tenant = unique_tenant("resume");
    let token = rt.token(&tenant, "alice");
    let desktop = rt.create_desktop(&token, "main").await?;

    let mut ws = rt.connect(&token, &desktop, None).await?;
    state_frame(&mut ws).await;
    let first = rt.open_window(&token, &desktop, "first").await?;
    let seen = recv_event(&mut ws, Duration::from_secs(10)).await.expect("first window event");
    let cursor = seen["cursor"].as_str().unwrap().to_owned();
    ws.close(None).await?;
    drop(ws);
    if let Some(wait) = wait_for_feed_to_stop {
        tokio::time::sleep(wait).await;
    }

    // Missed while away: two windows opened and a checked move (persisted before the reply).
    let second = rt.open_window(&token, &desktop, "second").await?;
    let third = rt.open_window(&token, &desktop, "third").await?;
    let first_id = first["window"]["id"].as_str().unwrap();
    let moved = rt
        .http
        .patch(format!("{}/api/v1/windows/{first_id}", rt.base))
        .bearer_auth(&token)
        .json(&json!({"x": 300, "y": 200, "expected_version": first["window"]["version"]}))
        .send()
        .await?;
    assert_eq!(moved.status(), 200, "{}", moved.text().await?);

    let mut back = rt.connect(&token, &desktop, Some(&cursor)).await?;
    let state = state_frame(&mut back).await;
    assert_eq!(state["cursor"], cursor.as_str(), "events after the client's cursor follow the state");
    let mut got = Vec::new();
    while let Some(frame) = recv_event(&mut back, Duration::from_secs(3)).await {
        got.push(frame);
    }
    let summary: Vec<(String, String)> = got
        .iter()
        .map(|f| {
            let data = &f["event"]["data"];
            let id = data["window"]["id"].as_str().or(data["window_id"].as_str()).unwrap_or_default();
            (f["event"]["type"].as_str().unwrap_or_default().to_owned(), id.to_owned())
        })
        .collect();
    let expected = [
        ("window.opened".to_owned(), second["window"]["id"].as_str().unwrap().to_owned()),
        ("window.opened".to_owned(), third["window"]["id"].as_str().unwrap().to_owned()),
        ("window.moved".to_owned(), first_id.to_owned()),
    ];
    assert_eq!(summary, expected, "every missed event exactly once, in order");
    let seqs: Vec<u64> = got.iter().map(|f| f["sequence"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");

    // And it is live again.
    let fourth = rt.open_window(&token, &desktop, "fourth").await?;
    let live = recv_event(&mut back, Duration::from_secs(10)).await.expect("live after catch-up");
    assert_eq!(live["event"]["data"]["window"]["id"], fourth["window"]["id"]);
    rt.stop().await
}

#[tokio::test]
async fn desktop_ws_reconnect_with_cursor_gets_missed_events_once_from_the_feed() -> anyhow::Result<()> {
    // The desktop feed outlives the drop: the missed events come from its memory.
    resume_scenario(json!({}), None).await
}

#[tokio::test]
async fn desktop_ws_reconnect_with_cursor_gets_missed_events_once_after_the_feed_stopped() -> anyhow::Result<()> {
    // The feed stops right after the last client leaves: the events come from the stream.
    resume_scenario(json!({"ws_feed_idle": "100ms"}), Some(Duration::from_millis(800))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn desktop_ws_slow_client_is_told_to_resync_and_others_get_everything() -> anyhow::Result<()> {
    const EVENTS: usize = 300;
    let rt = Realtime::start(json!({"ws_buffer": 32, "ws_replay": 8, "ws_send_timeout": "60s"})).await?;
    let tenant = unique_tenant("slow");
    let token = rt.token(&tenant, "alice");
    let desktop = rt.create_desktop(&token, "main").await?;

    let mut fast = rt.connect(&token, &desktop, None).await?;
    state_frame(&mut fast).await;
    // A client with a tiny receive window that stops reading: the gateway's writes to it block.
    let mut slow = {
        let addr = rt.platform.get(Service::Gateway).http_addr;
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.set_recv_buffer_size(4096)?;
        let stream = socket.connect(addr).await?;
        let mut req = format!("{}/ws/desktop/{desktop}", rt.ws_base).into_client_request()?;
        req.headers_mut().insert("authorization", format!("Bearer {token}").parse()?);
        tokio_tungstenite::client_async(req, MaybeTlsStream::Plain(stream)).await?.0
    };
    state_frame(&mut slow).await;

    // The reading client reads while the events are published.
    let reader = tokio::spawn(async move {
        let mut ids = Vec::new();
        while ids.len() < EVENTS {
            match recv(&mut fast, Duration::from_secs(30)).await {
                Some(frame) if frame["type"] == "event" => {
                    ids.push(frame["event"]["data"]["window"]["id"].as_str().unwrap_or_default().to_owned());
                }
                other => panic!("fast client stopped after {} events: {other:?}", ids.len()),
            }
        }
        ids
    });
    // Large events straight onto the tenant's window stream, as desktop-state would publish them.
    let nats = async_nats::connect(getlood_testkit::nats_url()).await?;
    let bus = EventBus::new(nats, "getlood");
    let tenant_id = getlood_auth::TenantId::parse(&tenant).map_err(anyhow::Error::msg)?;
    let padding = "x".repeat(64 * 1024);
    for i in 0..EVENTS {
        let mut props = prost_types::Struct::default();
        props.fields.insert("padding".into(), prost_types::Value::from(padding.clone()));
        let window = Window {
            id: format!("w{i}"),
            desktop_id: desktop.clone(),
            app_id: "load".into(),
            props: Some(props),
            ..Default::default()
        };
        let payload = Payload::WindowOpened(WindowOpened { window: Some(window), ..Default::default() });
        bus.publish(Domain::Window, &new_envelope(&tenant_id, "alice", &desktop, "window.opened", payload)).await?;
    }

    // The reading client is not slowed down by the other: it gets every event.
    let ids = reader.await?;
    assert_eq!(ids, (0..EVENTS).map(|i| format!("w{i}")).collect::<Vec<_>>());
    // The slow one gets what fit in its buffers, then a resync, never a silent gap.
    let mut received = 0;
    let mut resync = None;
    let mut last_id = None;
    while let Some(frame) = recv(&mut slow, Duration::from_secs(30)).await {
        match frame["type"].as_str() {
            Some("event") => {
                let id: usize = frame["event"]["data"]["window"]["id"].as_str().unwrap()[1..].parse()?;
                if let Some(prev) = last_id {
                    assert_eq!(id, prev + 1, "no gap before the resync");
                }
                last_id = Some(id);
                received += 1;
            }
            Some("resync") => {
                resync = Some(frame);
                break;
            }
            other => panic!("unexpected frame {other:?}"),
        }
    }
    let resync = resync.expect("the slow client is told to resync");
    assert_eq!(resync["reason"], "lagged");
    assert!(resync["cursor"].as_str().unwrap().starts_with("window:"));
    assert!(received < EVENTS, "the slow client cannot have received everything ({received})");
    assert!(recv(&mut slow, Duration::from_secs(5)).await.is_none(), "the socket closes after the resync");
    rt.stop().await
}
